"""The README's quick start in a fresh clone with no ``uv`` on PATH, then its commands, each in a new shell.

This is what a new user does: clone, ``python3 quickstart.py demo``, then the block of
"After the quick start" line by line. The clone is of the committed ``HEAD`` (what CI
checks out); the uv cache of the machine is shared, so the install costs links, not
downloads.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.prefect_server import REPO

README = REPO / "README.md"
DEMO_LINE_BUDGET = 60


def after_quick_start_commands(text: str) -> list[str]:
    """The commands of the first ``bash`` block under "## After the quick start"."""
    section = text.split("## After the quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block, "README: no bash block after the quick start"
    return [line.split(" #")[0].strip() for line in block[1].splitlines() if line.strip()]


def _fresh_shell_env(tmp_path: Path) -> dict[str, str]:
    """The user's environment without uv on PATH, a virtualenv, or this session's Prefect and Headwater settings."""
    uv_dirs = {str(Path(found).parent) for found in [shutil.which("uv")] if found}
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p not in uv_dirs and ".venv" not in p]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "HEADWATER_", "VIRTUAL_ENV", "UV_PROJECT", "PYTEST"))
    }
    env.update(PATH=os.pathsep.join(path), PREFECT_HOME=str(tmp_path / "prefect-home"), COLUMNS="200")
    return env


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_quick_start_then_every_readme_command_in_a_new_shell(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    env = _fresh_shell_env(tmp_path)
    assert shutil.which("uv", path=env["PATH"]) is None
    python = getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable

    demo = subprocess.run(
        [python, "quickstart.py", "demo"], cwd=clone, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    printed = demo.stdout.splitlines() + [line for line in demo.stderr.splitlines() if "/opt/pypi" not in line]
    assert len(printed) < DEMO_LINE_BUDGET, "\n".join(printed)
    assert "Traceback" not in demo.stderr
    assert "Starting temporary server" not in demo.stdout + demo.stderr
    assert re.search(r"✓ sot-ethereum 2026-11-22: loaded 90,000 rows", demo.stdout)
    assert "Nan Optipro Stage 1 Baby Formula 800g" in demo.stdout

    outputs = {}
    for command in after_quick_start_commands(README.read_text()):
        shell = subprocess.run(
            ["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert shell.returncode == 0, f"{command}\n{shell.stdout[-2000:]}\n{shell.stderr[-2000:]}"
        assert shell.stderr == "", f"{command}: nothing on stderr when all is well, found:\n{shell.stderr[-2000:]}"
        outputs[command] = shell.stdout
    sql = next(text for command, text in outputs.items() if "GROUP BY network" in command)
    assert {tuple(line.split()) for line in sql.splitlines()[1:]} == {
        ("bitcoin", "50000"),
        ("ethereum", "40000"),
        ("torus", "60000"),
    }
    rerun = next(text for command, text in outputs.items() if command.startswith(".venv/bin/headwater run sot"))
    assert rerun.strip().startswith("sot-ethereum 2026-11-22: unchanged")
