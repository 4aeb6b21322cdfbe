"""docs/walkthrough.md, followed command by command on real processes.

Every ``bash`` block of the document runs in order, each line in a new process with the
environment its ``export`` lines built; a block marked ``<!-- walkthrough: background -->``
is a terminal of its own, started and left running; ``<!-- walkthrough: skip … -->``
blocks are covered elsewhere (the quick start: tests/test_readme.py). The only changes
to the document's commands: free ports instead of 4200 and 8000, a temporary home
instead of ``./.headwater``, and the project's interpreter folder for ``.venv/bin/``.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import pytest

from devtools.generate import write_export
from tests.helpers import INGESTED, manifest_rows
from tests.prefect_server import REPO, free_port, server_env, stop_group

pytestmark = pytest.mark.server

DOC = REPO / "docs" / "walkthrough.md"
DAY = date(2026, 11, 22)
BLOCK = re.compile(r"(?:<!-- walkthrough: (?P<mark>\w+)[^>]*-->\n)?```bash\n(?P<body>.*?)```", re.DOTALL)


@dataclass(frozen=True)
class Step:
    """One command of the document and whether it runs in a terminal of its own."""

    command: str
    background: bool


def document_steps(text: str) -> list[Step]:
    """The document's commands in order (skipped blocks left out, comments and blank lines dropped)."""
    steps = []
    for block in BLOCK.finditer(text):
        if block["mark"] == "skip":
            continue
        for line in block["body"].splitlines():
            command = line.split(" #")[0].strip()
            if command:
                steps.append(Step(command, background=block["mark"] == "background"))
    return steps


def test_the_document_has_the_steps_of_a_deployment() -> None:
    commands = [s.command for s in document_steps(DOC.read_text())]
    assert commands[0].startswith(".venv/bin/prefect server start")
    assert any("deploy --all" in c for c in commands)
    assert any("worker start --pool headwater" in c for c in commands)
    assert any(c.startswith(".venv/bin/headwater serve-exports") for c in commands)
    assert any("deployment run 'ingest-sot/sot-ethereum'" in c for c in commands)


class Terminals:
    """The background processes of the walkthrough, stopped together."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, command: str, env: dict[str, str]) -> Path:
        log = self.folder / f"terminal-{len(self.processes)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, shell=True, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes.append((command, process))
        return log

    def stop(self) -> None:
        for _, process in reversed(self.processes):
            if process.poll() is None:
                stop_group(process)


@pytest.fixture
def terminals(tmp_path: Path) -> Iterator[Terminals]:
    running = Terminals(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def _wait(what: str, ready: object, log: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready within {timeout_s} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_walkthrough_from_a_fresh_clone_to_a_scheduled_sot_run(tmp_path: Path, terminals: Terminals) -> None:
    home = tmp_path / "headwater"
    export = write_export(home / "demo-exports", "ethereum", DAY, 300)  # what the quick start's demo leaves
    api_port, exports_port = free_port(), free_port()
    bindir = str(Path(sys.executable).parent) + "/"
    env = server_env(tmp_path)
    env.pop("PREFECT_UI_ENABLED")
    env.update(HEADWATER_HOME=str(home), PREFECT_WORKER_QUERY_SECONDS="1", COLUMNS="200")

    outputs: dict[str, str] = {}
    for step in document_steps(DOC.read_text()):
        command = (
            step.command.replace(".venv/bin/", bindir)
            .replace("4200", str(api_port))
            .replace("8000", str(exports_port))
            .replace(".headwater/", f"{home}/")
        )
        if command.startswith("export "):
            name, _, value = command.removeprefix("export ").partition("=")
            env[name] = value
            continue
        if step.background:
            log = terminals.start(command, dict(env))
            if "server start" in command:
                _wait("the Prefect server", lambda: _answers(f"http://127.0.0.1:{api_port}/api/health"), log)
            if "serve-exports" in command:
                url = f"http://127.0.0.1:{exports_port}/exports/ethereum/{DAY}/META.json"
                _wait("the export server", lambda url=url: _answers(url), log)
            continue
        done = subprocess.run(
            shlex.split(command), cwd=REPO, env=dict(env), capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, f"{step.command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        outputs[step.command] = done.stdout

    def output_of(prefix: str) -> str:
        (found,) = [text for command, text in outputs.items() if command.startswith(prefix)]
        return found

    assert "0 1 * * *" in output_of(".venv/bin/prefect deployment inspect")
    assert "Flow run finished successfully in 'Completed'" in " ".join(
        output_of(".venv/bin/prefect deployment run").split()
    )
    rows = manifest_rows(export)
    sql = output_of(".venv/bin/headwater sql").strip().splitlines()
    assert sql[-1].split() == ["ethereum", str(rows["raw_alerts"])]
    listed = output_of(".venv/bin/headwater tables")
    assert {line.split()[0] for line in listed.strip().splitlines()[1:]} == {f"sot.{t}" for t in INGESTED}
    [health] = [
        line for line in output_of(".venv/bin/headwater health").splitlines() if line.startswith("sot-ethereum ")
    ]
    assert "loaded" in health.split()
    assert "degraded" in health.split()
    assert f"newest data {DAY}" in health
    assert not (home / "tmp").exists() or list((home / "tmp").iterdir()) == []  # the run's temp files are gone
