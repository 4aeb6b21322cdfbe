"""Source health on a real ledger (SQLite and PostgreSQL): circuit breaker, reliability,
freshness from prefect.yaml, the health command, retention."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

from blocks.ledger import open_ledger
from devtools.export_server import ExportServer
from devtools.generate import write_export
from flows.health import main as health_main
from flows.health import report_health
from flows.retention import apply_retention
from flows.sot import ingest_sot
from headwater.health import cadence, deployment_schedules, freshness, health_rows, reliability
from headwater.ledger import SCHEMA_VERSION, runs
from headwater.settings import get_settings
from tests.helpers import INGESTED, ledger_runs, rows_for

DAY = date(2026, 11, 22)


def test_migration_from_schema_1_keeps_rows(ledger_backend: str) -> None:
    with open_ledger() as ledger:
        engine = ledger.engine
    v1 = sa.MetaData()
    sa.Table("ledger_info", v1, sa.Column("key", sa.String(64), primary_key=True), sa.Column("value", sa.String(256)))
    old_runs = sa.Table(
        "runs",
        v1,
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("flow_run_id", sa.String(64)),
        sa.Column("source", sa.String(64)),
        sa.Column("instance", sa.String(128)),
        sa.Column("partition_key", sa.String(256)),
        sa.Column("batch_id", sa.String(256)),
        sa.Column("status", sa.String(32)),
        sa.Column("started_at", sa.DateTime(timezone=True)),
    )
    with engine.begin() as conn:
        for table in ("runs", "ledger_info", "dataset_versions", "source_state", "source_health", "publish_intents"):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    v1.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO ledger_info (key, value) VALUES ('schema_version', '1')"))
        conn.execute(
            old_runs.insert().values(
                run_id="old",
                source="sot",
                instance="sot-ethereum",
                partition_key="ethereum/2026-01-01",
                status="loaded",
                started_at=datetime(2026, 1, 1, tzinfo=UTC),
            )
        )
    with open_ledger() as ledger:
        ledger.migrate()  # what a new process does on its first open (this one has its engine already)
        assert ledger.schema_version() == SCHEMA_VERSION == 4
        columns = {c["name"] for c in sa.inspect(ledger.engine).get_columns("runs")}
        assert {"quality_score", "rows_rejected", "rows_deduplicated", "rows_fetched", "notes"} <= columns
        assert {"owner", "heartbeat_at"} <= columns
        assert "publish_intents" in sa.inspect(ledger.engine).get_table_names()
        [row] = ledger.runs_for("sot-ethereum")
        assert (row["run_id"], row["status"], row["quality_score"]) == ("old", "loaded", None)
        ledger.set_state("openaq-1", "cursor:sensor-3", "2026-11-22T00:00:00Z")
        ledger.set_state("openaq-1", "cursor:sensor-3", "2026-11-23T00:00:00Z")
        assert ledger.get_state("openaq-1", "cursor:sensor-3") == "2026-11-23T00:00:00Z"
    with open_ledger() as ledger:  # a second migrate changes nothing
        ledger.migrate()
        assert ledger.schema_version() == 4


def test_reliability_score() -> None:
    assert reliability([]) is None
    assert reliability(["loaded", "unchanged", "loaded"]) == 1.0
    assert reliability(["failed", "failed"]) == 0.0
    assert reliability(["failed", "loaded"]) == round(1 / 1.9, 4)
    assert reliability(["loaded", "failed"]) == round(0.9 / 1.9, 4)
    assert reliability(["loaded", "skipped_circuit_open", "running"]) == 1.0


def test_cadence_and_freshness_come_from_prefect_yaml(home: Path) -> None:
    schedules = deployment_schedules()
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    assert schedules["sot-ethereum"] == (("0 1 * * *", "UTC"),)
    assert cadence(schedules["sot-ethereum"], now) == timedelta(days=1)
    assert cadence(schedules["health"], now) == timedelta(hours=1)
    day, grace = timedelta(days=1), timedelta(hours=1)
    assert freshness(None, day, now, grace) == "never"
    assert freshness(now - timedelta(hours=25), day, now, grace) == "fresh"
    assert freshness(now - timedelta(hours=26), day, now, grace) == "late"
    assert freshness(now - timedelta(hours=50), day, now, grace) == "stale"


def _fail_once(network: str, server: ExportServer) -> str:
    return ingest_sot(network, DAY, base_url=server.base_url).status


def test_circuit_breaker_opens_skips_probes_and_resets(
    ledger_backend: str,
    exports: Path,
    server: ExportServer,
    configure: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(circuit_thresholds='{"sot-ethereum": 3}', circuit_cooldown_s="3600")
    for _ in range(3):  # no export published: META.json is a 404
        with pytest.raises(Exception, match=r"META\.json: expected at"):
            ingest_sot("ethereum", DAY, base_url=server.base_url)
    with open_ledger() as ledger:
        health = ledger.health("sot-ethereum")
    assert health is not None
    assert (health["circuit_state"], health["consecutive_failures"]) == ("open", 3)

    before = len(server.requests)
    outcome = ingest_sot("ethereum", DAY, base_url=server.base_url)
    assert outcome.status == "skipped_circuit_open"
    assert "circuit open since" in (outcome.error or "")
    assert server.requests[before:] == []  # no network call while open
    assert ledger_runs("sot-ethereum")[-1]["status"] == "skipped_circuit_open"

    configure(circuit_cooldown_s="0")  # cooldown over: one probe; it fails, the circuit re-opens
    with pytest.raises(Exception, match=r"META\.json"):
        ingest_sot("ethereum", DAY, base_url=server.base_url)
    with open_ledger() as ledger:
        assert ledger.health("sot-ethereum")["circuit_state"] == "open"  # type: ignore[index]

    export = write_export(exports, "ethereum", DAY, 60)  # the publisher is back: the probe succeeds
    assert ingest_sot("ethereum", DAY, base_url=server.base_url).status == "loaded"
    with open_ledger() as ledger:
        health = ledger.health("sot-ethereum")
    assert health is not None
    assert (health["circuit_state"], health["consecutive_failures"]) == ("closed", 0)
    assert rows_for("raw_alerts", "ethereum", DAY.isoformat()) > 0

    configure(circuit_cooldown_s="3600")
    (export / "META.json").unlink()
    for _ in range(3):
        with pytest.raises(Exception, match=r"META\.json"):
            ingest_sot("ethereum", DAY, base_url=server.base_url)
    assert health_main(["--reset", "sot-ethereum"]) == 0
    assert "sot-ethereum: circuit closed" in capsys.readouterr().out
    with open_ledger() as ledger:
        health = ledger.health("sot-ethereum")
    assert health is not None
    assert (health["circuit_state"], health["consecutive_failures"]) == ("closed", 0)
    before = len(server.requests)
    with pytest.raises(Exception, match=r"META\.json"):
        ingest_sot("ethereum", DAY, base_url=server.base_url)
    assert server.requests[before:] == [f"/exports/ethereum/{DAY}/META.json"]


def test_health_view_table_json_and_freshness(
    ledger_backend: str, exports: Path, server: ExportServer, capsys: pytest.CaptureFixture[str]
) -> None:
    write_export(exports, "ethereum", DAY, 80)
    ingest_sot("ethereum", DAY, base_url=server.base_url)
    with pytest.raises(Exception, match=r"META\.json"):
        ingest_sot("bitcoin", DAY, base_url=server.base_url)

    assert health_main(["--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) >= {"sot-ethereum", "sot-bitcoin", "sot-torus"}
    eth, btc, torus = rows["sot-ethereum"], rows["sot-bitcoin"], rows["sot-torus"]
    assert (eth["state"], eth["circuit"], eth["reliability"], eth["consecutive_failures"]) == (
        "fresh",
        "closed",
        1.0,
        0,
    )
    assert eth["last_rows"] == sum(rows_for(t, "ethereum", DAY.isoformat()) for t in INGESTED)
    assert eth["cadence_s"] == 86_400
    assert eth["last_bytes"] > 0
    assert eth["last_success"]
    assert (btc["state"], btc["reliability"], btc["consecutive_failures"], btc["last_status"]) == (
        "never",
        0.0,
        1,
        "failed",
    )
    assert (torus["state"], torus["last_status"]) == ("never", None)

    assert health_main([]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("name")
    assert "circuit" in table[0]
    assert "reliability" in table[0]
    assert any(line.startswith("sot-ethereum") and "fresh" in line and "closed" in line for line in table)

    with open_ledger() as ledger:
        later = {r.name: r.state for r in health_rows(ledger, datetime.now(UTC) + timedelta(hours=30))}
        much_later = {r.name: r.state for r in health_rows(ledger, datetime.now(UTC) + timedelta(hours=60))}
    assert (later["sot-ethereum"], much_later["sot-ethereum"]) == ("late", "stale")

    # the publisher had nothing new: an unchanged run keeps the source fresh
    time.sleep(0.05)
    assert ingest_sot("ethereum", DAY, base_url=server.base_url).status == "unchanged"
    with open_ledger() as ledger:
        [eth_row] = [r for r in health_rows(ledger) if r.name == "sot-ethereum"]
    assert (eth_row.state, eth_row.last_status, eth_row.reliability) == ("fresh", "unchanged", 1.0)


def test_health_flow_records_freshness_and_returns_rows(
    ledger_backend: str, exports: Path, server: ExportServer
) -> None:
    write_export(exports, "torus", DAY, 40)
    ingest_sot("torus", DAY, base_url=server.base_url)
    rows = {r["name"]: r for r in report_health()}
    assert rows["sot-torus"]["state"] == "fresh"
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["source-health"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert artifact.type == "table"
    assert "sot-torus" in str(artifact.data)
    with open_ledger() as ledger:
        assert ledger.health("sot-torus")["freshness"] == "fresh"  # type: ignore[index]
        assert ledger.health("sot-bitcoin")["freshness"] == "never"  # type: ignore[index]


def test_retention_deletes_exactly_what_is_old(
    ledger_backend: str, exports: Path, server: ExportServer, configure: Callable[..., None]
) -> None:
    configure(retention_days='{"sot": 30}')
    today = datetime.now(UTC).date()
    old_day, new_day = today - timedelta(days=45), today - timedelta(days=2)
    for day in (old_day, new_day):
        write_export(exports, "ethereum", day, 50)
        ingest_sot("ethereum", day, base_url=server.base_url)
    with open_ledger() as ledger, ledger.engine.begin() as conn:
        conn.execute(
            runs.insert().values(
                run_id="ancient",
                source="sot",
                instance="sot-ethereum",
                partition_key="ethereum/2025-01-01",
                status="loaded",
                started_at=datetime.now(UTC) - timedelta(days=91),
            )
        )
        conn.execute(
            runs.insert().values(
                run_id="recent",
                source="sot",
                instance="sot-ethereum",
                partition_key="ethereum/2026-09-01",
                status="loaded",
                started_at=datetime.now(UTC) - timedelta(days=89),
            )
        )
    tmp = get_settings().tmp_dir
    orphan, live = tmp / "sot-ethereum-orphan", tmp / "sot-bitcoin-live"
    for directory in (orphan, live):
        (directory / "files").mkdir(parents=True)
        (directory / "files" / "x.parquet").write_bytes(b"x")
    stale = time.time() - 25 * 3600
    for path in (orphan / "files" / "x.parquet", orphan / "files", orphan):
        os.utime(path, (stale, stale))

    report = apply_retention()

    assert report.ledger_runs_deleted == 1
    assert {r["run_id"] for r in ledger_runs("sot-ethereum")} >= {"recent"}
    assert "ancient" not in {r["run_id"] for r in ledger_runs("sot-ethereum")}
    assert report.temp_dirs_removed == ["sot-ethereum-orphan"]
    assert not orphan.exists()
    assert live.exists()
    assert len(report.partitions_dropped) == len(INGESTED)
    assert all(rows_for(t, "ethereum", old_day.isoformat()) == 0 for t in INGESTED)
    assert all(rows_for(t, "ethereum", new_day.isoformat()) > 0 for t in INGESTED)
