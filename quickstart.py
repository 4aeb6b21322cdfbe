#!/usr/bin/env python3
"""Set up and run Headwater on a fresh machine that has only Python 3.11+.

    python3 quickstart.py demo   # install, then run the demo on the embedded defaults
    python3 quickstart.py test   # install, then lint, type-check and run the whole test suite

Installs uv (into ./.tools when it is not on PATH), then the locked dependencies
(uv.lock) into ./.venv. Extra arguments go to the demo or to pytest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TOOLS = ROOT / ".tools"
UV_REQUIREMENT = "uv>=0.9,<1"


def find_uv() -> str:
    """A uv executable: on PATH, in ./.tools, or freshly installed there."""
    found = shutil.which("uv")
    if found:
        return found
    bindir = TOOLS / ("Scripts" if os.name == "nt" else "bin")
    local = bindir / "uv"
    if not local.exists():
        print(f"quickstart: installing {UV_REQUIREMENT} into {TOOLS}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(TOOLS)], check=True)
        subprocess.run(
            [str(bindir / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", UV_REQUIREMENT],
            check=True,
        )
    return str(local)


def run(*args: str, echo: bool = True) -> int:
    """Run a command in the repo root; return its exit code."""
    if echo:
        print("quickstart: " + " ".join(args), flush=True)
    return subprocess.run(args, cwd=ROOT, check=False).returncode


def main(argv: list[str]) -> int:
    """Dispatch ``demo`` or ``test``."""
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__, file=sys.stderr)
        return 2
    command, extra = argv[0], argv[1:]
    uv = find_uv()
    # Bytecode compiled once at install: every later command starts about 4 s sooner where
    # Python writes no .pyc itself (PYTHONDONTWRITEBYTECODE, read-only installs).
    print("quickstart: installing the locked dependencies into .venv (the first time takes a minute)", flush=True)
    if run(uv, "sync", "--frozen", "--compile-bytecode", "--quiet", echo=False) != 0:
        return 1
    if command == "demo":
        code = run(str(ROOT / ".venv" / "bin" / "headwater"), "demo", *extra)
        print("quickstart: done; every command is in .venv/bin (try .venv/bin/headwater --help)", flush=True)
        return code
    for step in (
        (uv, "run", "--frozen", "ruff", "check", "."),
        (uv, "run", "--frozen", "ruff", "format", "--check", "."),
        (uv, "run", "--frozen", "mypy"),
    ):
        if run(*step) != 0:
            return 1
    return run(uv, "run", "--frozen", "pytest", *extra)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
