"""`python -m flows.sot` and `python -m flows.sot_sweep` as other tools drive them."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

from prefect.settings import PREFECT_API_URL

from devtools.export_server import ExportServer
from devtools.generate import write_export
from flows.sot import ingest_sot
from flows.sot_sweep import sot_retry_sweep
from tests.helpers import INGESTED, ledger_runs, manifest_rows, rows_for, temp_leftovers
from tests.prefect_server import REPO

DAY = date(2026, 11, 22)


def _cli_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    env.update(
        HEADWATER_HOME=str(home),
        HEADWATER_HTTP_BACKOFF_INITIAL_S="0.01",
        HEADWATER_HTTP_BACKOFF_MAX_S="0.05",
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
    )
    return env


def _start(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.sot", *args],
        cwd=REPO,
        env=_cli_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_cli_exit_codes(home: Path, exports: Path, server: ExportServer) -> None:
    write_export(exports, "ethereum", DAY, 100)
    args = ["--network", "ethereum", "--date", DAY.isoformat(), "--base-url", server.base_url]
    first = _start(home, *args)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert "loaded" in out
    again = _start(home, *args)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "unchanged" in out

    bitcoin = ["--network", "bitcoin", "--date", DAY.isoformat(), "--base-url", server.base_url]
    missing = subprocess.Popen(  # a missing META.json fails at once, without waiting for it
        [sys.executable, "-m", "flows.sot", *bitcoin],
        cwd=REPO,
        env={**_cli_env(home), "HEADWATER_MANIFEST_WAIT_ATTEMPTS": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = missing.communicate(timeout=300)
    assert missing.returncode == 1
    assert err.strip().splitlines()[-1] == (
        f"error: sot-bitcoin 2026-11-22: META.json: expected at {server.base_url}/bitcoin/2026-11-22/META.json, "
        "found HTTP 404 (the export is not published yet, or was published without its manifest)"
    )
    assert [r["status"] for r in ledger_runs("sot-bitcoin")] == ["failed"]


def test_two_processes_started_together_both_complete(home: Path, exports: Path, server: ExportServer) -> None:
    """Embedded chDB allows one process per path: the warehouse lock makes them take turns."""
    expected = {n: manifest_rows(write_export(exports, n, DAY, 2000)) for n in ("ethereum", "torus")}
    processes = {
        n: _start(home, "--network", n, "--date", DAY.isoformat(), "--base-url", server.base_url) for n in expected
    }
    for network, process in processes.items():
        _out, err = process.communicate(timeout=300)
        assert process.returncode == 0, f"{network}: {err[-2000:]}"
    for network, rows in expected.items():
        for table in INGESTED:
            assert rows_for(table, network, DAY.isoformat()) == rows[table]
    assert temp_leftovers() == []


def test_retry_sweep_reruns_only_networks_not_loaded(home: Path, exports: Path, server: ExportServer) -> None:
    for network in ("ethereum", "bitcoin", "torus"):
        write_export(exports, network, DAY, 60)
    ingest_sot("ethereum", DAY, base_url=server.base_url)
    before = len(server.requests)

    statuses = sot_retry_sweep(DAY, base_url=server.base_url)

    assert statuses == {"bitcoin": "loaded", "torus": "loaded"}
    swept = server.requests[before:]
    assert swept
    assert not any("/ethereum/" in path for path in swept)
    assert [r["status"] for r in ledger_runs("sot-ethereum")] == ["loaded"]
    assert sot_retry_sweep(DAY, base_url=server.base_url) == {}
