"""Fault injection: kill -9 a real run at named points, then check what the next run sees.

Each case loads version A of an export, kills a run of version B at one point
(``HEADWATER_FAILPOINT``, see ``headwater/faults.py``), then runs again normally and
asserts that every table of the partition holds exactly B's rows of one batch, that the
ledger agrees (the killed run ``failed``/``crashed``, its repair recorded), and that no
``_stg_``/``_bak_`` table or temp dir is left. Run on its own: ``pytest tests/test_faults.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL

from flows.sot import ingest_sot
from headwater.export_server import ExportServer
from headwater.ledger import open_ledger
from headwater.sources.sot.generate import write_export
from tests.helpers import INGESTED, batch_ids, ledger_runs, manifest_rows, query, rows_for, tables, temp_leftovers
from tests.prefect_server import REPO

DAY = date(2026, 11, 22)
DAY_S = DAY.isoformat()

# point → the status of the run after the crash: a publish that was complete or could be finished
# from its staging tables leaves the partition at B, so the next run finds it unchanged.
POINTS = {
    "downloaded": "loaded",
    "staged": "loaded",
    "mid-publish": "unchanged",
    "published": "unchanged",
    "ledger-write": "unchanged",
}


def killed_run(home: Path, base_url: str, point: str) -> subprocess.CompletedProcess[str]:
    """``python -m flows.sot`` for ethereum, killed with SIGKILL at ``point``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    env.update(
        HEADWATER_HOME=str(home),
        HEADWATER_FAILPOINT=point,
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
    )
    return subprocess.run(
        [sys.executable, "-m", "flows.sot", "--network", "ethereum", "--date", DAY_S, "--base-url", base_url],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def assert_holds_exactly(export: Path, batch_id: str) -> None:
    expected = manifest_rows(export)
    for table in INGESTED:
        assert rows_for(table, "ethereum", DAY_S) == expected[table], table
        assert batch_ids(table, "ethereum", DAY_S) == {batch_id}, table
    assert not any(t.startswith(("_stg_", "_bak_")) for t in tables())
    assert temp_leftovers() == []


@pytest.mark.parametrize("point", POINTS)
def test_kill_at_point_then_next_run_repairs(point: str, home: Path, exports: Path, server: ExportServer) -> None:
    write_export(exports, "ethereum", DAY, 200)
    first = ingest_sot("ethereum", DAY, base_url=server.base_url)  # version A
    assert first.status == "loaded"
    export = write_export(exports, "ethereum", DAY, 300, salt=1)  # version B
    killed = killed_run(home, server.base_url, point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]

    after = ingest_sot("ethereum", DAY, base_url=server.base_url)

    assert after.status == POINTS[point]
    assert after.batch_id != first.batch_id
    assert_holds_exactly(export, after.batch_id)
    runs = ledger_runs("sot-ethereum")
    crashed = [r for r in runs if r["error_kind"] == "crashed"]
    assert len(crashed) == 1
    assert crashed[0]["status"] == "failed"
    assert "crashed without recording an outcome" in crashed[0]["error"]
    assert not [r for r in runs if r["status"] == "running"]
    repaired = [r for r in runs if r["status"] == "repaired"]
    assert len(repaired) == (1 if POINTS[point] == "unchanged" else 0)
    with open_ledger() as ledger:
        assert ledger.current_version("sot-ethereum", f"ethereum/{DAY_S}")["batch_id"] == after.batch_id
        assert ledger.pending_intents("sot-ethereum") == []
        assert ledger.health("sot-ethereum")["consecutive_failures"] == 0  # the success after it reset the count


@pytest.fixture
def version_a(home: Path, exports: Path, server: ExportServer) -> tuple[Path, str]:
    export = write_export(exports, "ethereum", DAY, 200)
    outcome = ingest_sot("ethereum", DAY, base_url=server.base_url)
    assert outcome.status == "loaded"
    return export, str(outcome.batch_id)


def test_two_batches_in_a_partition_are_repaired_not_reported_unchanged(
    version_a: tuple[Path, str], server: ExportServer
) -> None:
    export, batch_a = version_a
    # the state a crash inside REPLACE PARTITION leaves: old and new parts both active
    query(
        "INSERT INTO sot.raw_alerts SELECT * REPLACE ('sot:other' AS _batch_id) FROM sot.raw_alerts "
        "WHERE network = 'ethereum' AND processing_date = {d:Date}",
        {"d": DAY_S},
    )
    assert len(batch_ids("raw_alerts", "ethereum", DAY_S)) == 2

    again = ingest_sot("ethereum", DAY, base_url=server.base_url)

    assert again.status == "loaded"
    assert_holds_exactly(export, batch_a)
    [repaired] = [r for r in ledger_runs("sot-ethereum") if r["status"] == "repaired"]
    assert "the warehouse does not hold the loaded version" in repaired["error"]
    assert "raw_alerts" in repaired["error"]
    assert "sot:other" in repaired["error"]


def test_doubled_keys_are_repaired(version_a: tuple[Path, str], server: ExportServer) -> None:
    export, batch_a = version_a
    query(
        "INSERT INTO sot.raw_address_labels SELECT * FROM sot.raw_address_labels "
        "WHERE network = 'ethereum' AND processing_date = {d:Date}",
        {"d": DAY_S},
    )
    again = ingest_sot("ethereum", DAY, base_url=server.base_url)
    assert again.status == "loaded"
    assert_holds_exactly(export, batch_a)


def test_lost_rows_are_repaired(version_a: tuple[Path, str], server: ExportServer) -> None:
    export, batch_a = version_a
    query("ALTER TABLE sot.raw_features DROP PARTITION ('ethereum', {d:String})", {"d": DAY_S})
    again = ingest_sot("ethereum", DAY, base_url=server.base_url)
    assert again.status == "loaded"
    assert_holds_exactly(export, batch_a)
