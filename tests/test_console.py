"""The ``headwater`` console script, run as an operator runs it: the installed entry point in a new process."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx
import pytest
from prefect.settings import PREFECT_API_URL

from commands.app import main as console_main
from devtools.export_server import ExportServer
from devtools.generate import write_export
from headwater.cli import run_label, summary_line
from headwater.outcome import BatchOutcome
from tests.helpers import INGESTED, ledger_runs, manifest_rows, query
from tests.prefect_server import REPO

DAY = date(2026, 11, 22)
HEADWATER = Path(sys.executable).parent / "headwater"


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)  # the home fixture's HEADWATER_* (home, no manifest waits, fast retries)
    env.update(HEADWATER_HOME=str(home), PREFECT_API_URL=str(PREFECT_API_URL.value()), COLUMNS="200")
    return env


def headwater(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HEADWATER), *args], cwd=REPO, env=_env(home), capture_output=True, text=True, timeout=120, check=False
    )


def _load_ethereum(home: Path, exports: Path, server: ExportServer) -> dict[str, int]:
    rows = manifest_rows(write_export(exports, "ethereum", DAY, 300))
    done = headwater(
        home,
        "run",
        "sot",
        "--param",
        "network=ethereum",
        "-p",
        f"processing_date={DAY}",
        "-p",
        f"base_url={server.base_url}",
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    (line,) = done.stdout.strip().splitlines()
    total = sum(rows[t] for t in INGESTED)
    assert re.fullmatch(rf"sot-ethereum {DAY}: loaded {total:,} rows \(4 tables, [0-9.]+ [kM]?B\) in [0-9.]+ s", line)
    return rows


def test_run_loads_then_reports_unchanged_in_one_line_each(home: Path, exports: Path, server: ExportServer) -> None:
    rows = _load_ethereum(home, exports, server)
    assert query("SELECT count() FROM sot.raw_alerts")[0][0] == rows["raw_alerts"]
    again = headwater(
        home, "run", "sot", "-p", "network=ethereum", "-p", f"processing_date={DAY}", "--base-url", server.base_url
    )
    assert again.returncode == 0, again.stderr
    (line,) = again.stdout.strip().splitlines()
    assert line.startswith(f"sot-ethereum {DAY}: unchanged in ")
    assert [r["status"] for r in ledger_runs("sot-ethereum")] == ["loaded", "unchanged"]


def test_run_failures_are_one_line_and_exit_codes_match_the_module(home: Path, server: ExportServer) -> None:
    failed = headwater(
        home, "run", "sot", "-p", "network=bitcoin", "-p", f"processing_date={DAY}", "-p", f"base_url={server.base_url}"
    )
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr.splitlines() == [
        f"error: sot-bitcoin {DAY}: META.json: expected at {server.base_url}/bitcoin/{DAY}/META.json, "
        "found HTTP 404 (the export is not published yet, or was published without its manifest)"
    ]
    verbose = headwater(
        home,
        "--verbose",
        "run",
        "sot",
        "-p",
        "network=bitcoin",
        "-p",
        f"processing_date={DAY}",
        "-p",
        f"base_url={server.base_url}",
    )
    assert verbose.returncode == 1
    assert "Traceback" in verbose.stderr
    assert f"Task run 'download META.json of sot-bitcoin {DAY}'" in verbose.stderr  # Prefect's own log lines
    assert verbose.stderr.splitlines()[-1].startswith(f"error: sot-bitcoin {DAY}: META.json")
    after = headwater(  # --verbose after the command counts as well
        home, "run", "sot", "-p", "network=bitcoin", "-p", f"processing_date={DAY}", "--base-url", server.base_url, "-v"
    )
    assert after.returncode == 1
    assert f"Task run 'download META.json of sot-bitcoin {DAY}'" in after.stderr
    assert after.stderr.splitlines()[-1].startswith(f"error: sot-bitcoin {DAY}: META.json")

    assert [r["status"] for r in ledger_runs("sot-bitcoin")] == ["failed", "failed", "failed"]


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``headwater ARGS`` in this process (commands that start no flow run): exit code, stdout, stderr."""
    code = console_main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_bad_commands_are_one_line_and_exit_2(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = in_process(capsys, "run", "sot", "-p", "network=ethereum", "-p", "processing_date=22/11/2026")
    assert code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("error: sot-ethereum")
    assert "22/11/2026" in err
    code, _, err = in_process(capsys, "run", "sott")
    assert code == 2
    assert err.startswith("error: run: expected one of catalog, catalog-cleanup, ")
    assert err.rstrip().endswith("found 'sott'")
    code, _, err = in_process(capsys, "run", "sot", "-p", "network")
    assert (code, err.strip()) == (2, "error: run: expected --param NAME=VALUE, found 'network'")
    assert ledger_runs() == []


def test_sql_tables_answer_and_writes_are_refused(
    home: Path, exports: Path, server: ExportServer, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _load_ethereum(home, exports, server)
    table = headwater(home, "sql", "SELECT network, count() AS n FROM sot.raw_alerts GROUP BY network")
    assert table.returncode == 0, table.stderr
    header, line = table.stdout.strip().splitlines()
    assert header.split() == ["network", "n"]
    assert line.split() == ["ethereum", str(rows["raw_alerts"])]

    sql = "SELECT count() AS n, toDate('2026-11-22') AS d FROM sot.raw_alerts"
    code, out, _ = in_process(capsys, "sql", sql, "--format", "csv")
    assert code == 0
    assert list(csv.reader(io.StringIO(out))) == [["n", "d"], [str(rows["raw_alerts"]), "2026-11-22"]]
    code, out, _ = in_process(capsys, "sql", "SELECT count() AS n FROM sot.raw_features", "-f", "json")
    assert json.loads(out) == [{"n": rows["raw_features"]}]

    for statement in ("DROP TABLE sot.raw_alerts", "INSERT INTO sot.raw_alerts SELECT * FROM sot.raw_alerts"):
        code, _, err = in_process(capsys, "sql", statement)
        assert code == 2
        assert "readonly" in err.lower()
        assert len(err.splitlines()) == 1
    assert query("SELECT count() FROM sot.raw_alerts")[0][0] == rows["raw_alerts"]

    code, out, _ = in_process(capsys, "tables", "--database", "sot")
    assert code == 0
    lines = {line.split()[0]: line.split() for line in out.strip().splitlines()[1:]}
    assert set(lines) == {f"sot.{t}" for t in INGESTED}
    (batch,) = {r["batch_id"] for r in ledger_runs("sot-ethereum")}
    for name in INGESTED:
        cells = lines[f"sot.{name}"]
        assert cells[1] == f"{rows[name]:,}"
        assert cells[2] == "1"
        assert batch in cells


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_exports_serves_a_folder_until_stopped(home: Path, exports: Path) -> None:
    write_export(exports, "torus", DAY, 50)
    port = _free_port()
    process = subprocess.Popen(
        [str(HEADWATER), "serve-exports", str(exports), "--port", str(port)],
        cwd=REPO,
        env=_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert (
            process.stdout.readline().strip()
            == f"serving {exports} at http://127.0.0.1:{port}/exports (Ctrl-C to stop)"
        )
        manifest = httpx.get(f"http://127.0.0.1:{port}/exports/torus/{DAY}/META.json", timeout=10)
        assert manifest.status_code == 200
        assert manifest.json()["x-headwater"]["partition"]["network"] == "torus"
    finally:
        process.terminate()
        process.wait(timeout=30)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/exports/", timeout=1)
        except httpx.TransportError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the export server still answers after it was stopped")


def test_summary_line_says_what_a_run_did() -> None:
    loaded = BatchOutcome("fx-rates", "EUR", "loaded", rows_by_table={"rates": 1}, bytes=1900, duration_s=0.61)
    assert summary_line(loaded) == "fx-rates EUR: loaded 1 row (1 table, 1.9 kB) in 0.6 s"
    assert summary_line(BatchOutcome("worldbank-business", "business", "unchanged")) == "worldbank-business: unchanged"
    assert run_label("catalog-demo-shop", "demo-shop/feed") == "catalog-demo-shop feed"
    assert run_label("ilostat-une-deap-sex-age-rt-a", "UNE_DEAP_SEX_AGE_RT_A") == "ilostat-une-deap-sex-age-rt-a"
