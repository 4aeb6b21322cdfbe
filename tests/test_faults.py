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
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from prefect.settings import PREFECT_API_URL

from blocks.ledger import open_ledger
from devtools.export_server import ExportServer
from devtools.generate import write_export
from flows.health import warehouse_damage
from flows.retention import apply_retention
from flows.sot import ingest_sot
from flows.sot_sweep import networks_not_loaded, sot_retry_sweep
from headwater.batch import run_tag
from headwater.health import health_rows
from headwater.ledger import SCHEMA_VERSION
from headwater.loading import Part, TablePlan, partition_filter, partition_literal
from headwater.reconcile import lease, owner_id
from tests.helpers import INGESTED, batch_ids, ledger_runs, manifest_rows, query, rows_for, tables, temp_leftovers
from tests.prefect_server import REPO

DAY = date(2026, 11, 22)
DAY_S = DAY.isoformat()

# point → the status of the run after the crash: a publish that was complete or could be finished
# from its staging tables leaves the partition at B, so the next run finds it unchanged.
POINTS = {
    "downloaded": "loaded",
    "table-staged": "loaded",  # the first table staged, the others still staging on their clients
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


def double_partition(table: str) -> None:
    """Insert every row of ethereum's partition of ``table`` a second time (every key doubled)."""
    query(
        f"INSERT INTO sot.{table} SELECT * FROM sot.{table} "
        "WHERE network = 'ethereum' AND processing_date = {d:Date}",
        {"d": DAY_S},
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


def test_a_crash_after_publish_then_a_crash_during_the_next_publish(
    home: Path, exports: Path, server: ExportServer
) -> None:
    write_export(exports, "ethereum", DAY, 200)
    ingest_sot("ethereum", DAY, base_url=server.base_url)  # A
    write_export(exports, "ethereum", DAY, 250, salt=1)  # B, published but never recorded
    assert killed_run(home, server.base_url, "published").returncode == -signal.SIGKILL
    export = write_export(exports, "ethereum", DAY, 300, salt=2)  # C, killed between two tables' swaps
    assert killed_run(home, server.base_url, "mid-publish").returncode == -signal.SIGKILL

    after = ingest_sot("ethereum", DAY, base_url=server.base_url)

    assert after.status == "unchanged"  # C's publish was finished from its staging tables
    assert_holds_exactly(export, after.batch_id)
    runs = ledger_runs("sot-ethereum")
    assert [r["status"] for r in runs if r["status"] != "loaded"] == [
        "failed",
        "repaired",
        "failed",
        "repaired",
        "unchanged",
    ]
    assert {r["error_kind"] for r in runs if r["status"] == "failed"} == {"crashed"}


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
    double_partition("raw_address_labels")
    again = ingest_sot("ethereum", DAY, base_url=server.base_url)
    assert again.status == "loaded"
    assert_holds_exactly(export, batch_a)


def test_lost_rows_are_repaired(version_a: tuple[Path, str], server: ExportServer) -> None:
    export, batch_a = version_a
    query("ALTER TABLE sot.raw_features DROP PARTITION ('ethereum', {d:String})", {"d": DAY_S})
    again = ingest_sot("ethereum", DAY, base_url=server.base_url)
    assert again.status == "loaded"
    assert_holds_exactly(export, batch_a)


RACE = """
import pathlib, sys, time
from blocks.ledger import get_ledger
from headwater.settings import Settings
root, kind, targets = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
(root / f"ready-{__import__('os').getpid()}").touch()
for i, target in enumerate(targets):
    while not (root / f"go-{i}").exists():
        time.sleep(0.001)
    settings = Settings(home=pathlib.Path(target)) if kind == "sqlite" else Settings(ledger_url=target)
    print(get_ledger(settings).schema_version(), flush=True)
    (root / f"done-{i}-{__import__('os').getpid()}").touch()
"""


def race_ledger_creation(root: Path, kind: str, targets: list[str]) -> list[list[str]]:
    """Two processes create and migrate each fresh ledger in ``targets`` at the same moment.

    Both import once, then for every target wait at a shared barrier file, so each
    creation is a real race of two processes on one fresh SQLite file or database.
    """
    root.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(root), kind, *targets],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]

    def wait_for(pattern: str) -> None:
        deadline = time.monotonic() + 120
        while len(list(root.glob(pattern))) < 2 and all(p.poll() is None for p in procs):
            assert time.monotonic() < deadline, f"processes did not reach {pattern}"
            time.sleep(0.005)

    wait_for("ready-*")
    for i in range(len(targets)):
        (root / f"go-{i}").touch()
        wait_for(f"done-{i}-*")
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        outputs.append(out.split())
    return outputs


def test_two_processes_create_fresh_sqlite_ledgers_together_20_times(tmp_path: Path) -> None:
    targets = [str(tmp_path / f"home-{i}") for i in range(20)]
    outputs = race_ledger_creation(tmp_path / "race", "sqlite", targets)
    assert outputs == [[str(SCHEMA_VERSION)] * 20] * 2


def test_two_processes_create_fresh_postgresql_ledgers_together(tmp_path: Path, postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    targets = []
    with engine.connect() as conn:
        for _ in range(10):
            name = f"race_{os.urandom(5).hex()}"
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
            targets.append(postgres_url.rsplit("/", 1)[0] + f"/{name}")
    engine.dispose()
    outputs = race_ledger_creation(tmp_path / "race", "postgresql", targets)
    assert outputs == [[str(SCHEMA_VERSION)] * 10] * 2


def test_two_first_runs_on_a_fresh_home_both_load(tmp_path: Path, exports: Path, server: ExportServer) -> None:
    for network in ("ethereum", "bitcoin"):
        write_export(exports, network, DAY, 100)
    home = tmp_path / "fresh"
    code = (
        "import sys; from flows.sot import main; "
        f"sys.exit(main(['--network', sys.argv[1], '--date', {DAY_S!r}, '--base-url', {server.base_url!r}]))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    env.update(HEADWATER_HOME=str(home), PREFECT_API_URL=str(PREFECT_API_URL.value()))
    barrier = home / ".go"
    gate = f"import pathlib, time\nwhile not pathlib.Path({str(barrier)!r}).exists(): time.sleep(0.005)\n"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", gate + code, network],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for network in ("ethereum", "bitcoin")
    ]
    time.sleep(3)
    home.mkdir(parents=True, exist_ok=True)
    barrier.touch()
    outcomes = [(*p.communicate(timeout=300), p.returncode) for p in procs]
    assert [o[2] for o in outcomes] == [0, 0], [o[1][-1500:] for o in outcomes]
    assert all("loaded" in o[0] for o in outcomes)


def test_a_crash_counts_toward_the_circuit_breaker(
    home: Path, exports: Path, server: ExportServer, configure: Callable[..., None]
) -> None:
    configure(circuit_threshold="1")
    write_export(exports, "ethereum", DAY, 150)
    assert killed_run(home, server.base_url, "staged").returncode == -signal.SIGKILL

    after = ingest_sot("ethereum", DAY, base_url=server.base_url)

    assert after.status == "skipped_circuit_open"  # the crash was the one failure the threshold allows
    assert [(r["status"], r["error_kind"]) for r in ledger_runs("sot-ethereum")] == [
        ("failed", "crashed"),
        ("skipped_circuit_open", "circuit_open"),
    ]
    # nothing of the killed run is visible or left behind
    assert not any(t.startswith(("_stg_", "_bak_")) for t in tables())
    assert temp_leftovers() == []
    assert all(rows_for(t, "ethereum", DAY_S) == 0 for t in INGESTED)


def test_sweep_and_health_read_the_warehouse_not_the_ledger(version_a: tuple[Path, str], server: ExportServer) -> None:
    export, batch_a = version_a
    double_partition("raw_alerts")
    assert networks_not_loaded(["ethereum"], DAY) == ["ethereum"]
    with open_ledger() as ledger:
        [row] = [r for r in health_rows(ledger, damage=warehouse_damage(ledger)) if r.name == "sot-ethereum"]
    assert row.state == "damaged"

    assert sot_retry_sweep(DAY, networks=["ethereum"], base_url=server.base_url) == {"ethereum": "loaded"}

    assert_holds_exactly(export, batch_a)
    assert networks_not_loaded(["ethereum"], DAY) == []
    with open_ledger() as ledger:
        [row] = [r for r in health_rows(ledger, damage=warehouse_damage(ledger)) if r.name == "sot-ethereum"]
    assert row.state != "damaged"


def test_retention_drops_stale_run_tables_unless_their_run_is_running(
    version_a: tuple[Path, str], configure: Callable[..., None]
) -> None:
    configure(stale_staging_hours="0")
    query("CREATE TABLE sot._stg_raw_alerts_0123456789abcdef AS sot.raw_alerts")
    live_run = "f" * 32
    query(f"CREATE TABLE sot._bak_raw_alerts_{run_tag(live_run)} AS sot.raw_alerts")
    with open_ledger() as ledger, lease(live_run, lambda: None, 60):
        ledger.start_run(
            run_id=live_run,
            flow_run_id=None,
            source="sot",
            instance="sot-ethereum",
            partition_key="ethereum/2026-11-23",
            owner=owner_id(),
        )
        time.sleep(1.1)  # older than the cutoff (whole seconds)
        report = apply_retention()
    assert report.run_tables_dropped == ["sot._stg_raw_alerts_0123456789abcdef"]
    assert f"_bak_raw_alerts_{run_tag(live_run)}" in tables()


def test_an_unrepairable_publish_is_recorded_and_does_not_block_the_next_loads(
    version_a: tuple[Path, str], server: ExportServer
) -> None:
    export, batch_a = version_a
    rows = manifest_rows(export)["raw_features"]
    partition = {"network": "ethereum", "processing_date": DAY_S}
    columns = ("network", "processing_date")
    plan = TablePlan(
        table="raw_features",
        mode="replace",
        source="_stg_raw_features_gone0000000000",
        backup="_bak_raw_features_gone0000000000",
        parts=(Part(partition_literal(partition, columns), partition_filter(partition, columns)),),
        expected_rows=rows,
        previous={batch_a: rows},
        key=("address",),
        batch_rows=rows,
    )
    with open_ledger() as ledger:  # a dead run's publish whose staging and backup were dropped by hand
        ledger.record_intent(
            run_id="dead" + "0" * 28,
            instance="sot-ethereum",
            partition_key=f"ethereum/{DAY_S}",
            batch_id="sot:ethereum/2026-11-22:gone",
            content_hash="0" * 64,
            plan={"database": "sot", "tables": [plan.as_json()], "bytes": 0},
        )
    query("ALTER TABLE sot.raw_features DROP PARTITION ('ethereum', {d:String})", {"d": DAY_S})

    again = ingest_sot("ethereum", DAY, base_url=server.base_url)

    assert again.status == "loaded"
    assert_holds_exactly(export, batch_a)
    [abandoned] = [r for r in ledger_runs("sot-ethereum") if r["error_kind"] == "repair_failed"]
    assert abandoned["status"] == "failed"
    assert "could not repair the publish of run dead00000000" in abandoned["error"]
    assert "raw_features" in abandoned["error"]
    with open_ledger() as ledger:
        assert ledger.pending_intents("sot-ethereum") == []
