"""Source health on a real ledger (SQLite and PostgreSQL) and warehouse: circuit breaker, reliability,
freshness from prefect.yaml, the data clock, degraded sources, the health command and artifact, retention."""

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
from pytest_httpserver import HTTPServer

from blocks.ledger import open_ledger
from devtools.export_server import ExportServer
from devtools.generate import write_export
from flows.coffee import ingest_coffee
from flows.health import health_report, report_health
from flows.health import main as health_main
from flows.retention import apply_retention
from flows.sot import ingest_sot
from headwater.health import (
    STATES,
    SourceHealth,
    build_report,
    cadence,
    degraded_reasons,
    deployment_schedules,
    freshness,
    health_rows,
    health_table_text,
    human_duration,
    reliability,
    state_of,
)
from headwater.ledger import SCHEMA_VERSION, runs
from headwater.settings import get_settings
from headwater.sources.coffee import ICO_FALLBACK
from tests.helpers import INGESTED, ledger_runs, query, rows_for

DAY = date(2026, 11, 22)
"""A fixed, past processing date: its data is older than SOT's declared 3 days once 2026-11-25 has passed."""
RECENT = datetime.now(UTC).date() - timedelta(days=1)
"""Yesterday: the processing date a daily SOT run loads, its data on time."""


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
    write_export(exports, "ethereum", RECENT, 80)
    ingest_sot("ethereum", RECENT, base_url=server.base_url)
    with pytest.raises(Exception, match=r"META\.json"):
        ingest_sot("bitcoin", RECENT, base_url=server.base_url)

    assert health_main(["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["overall"] == "never"  # bitcoin and the other deployed instances never succeeded
    assert report["counts"]["fresh"] == 1
    rows = {r["name"]: r for r in report["sources"]}
    assert set(rows) >= {"sot-ethereum", "sot-bitcoin", "sot-torus"}
    eth, btc, torus = rows["sot-ethereum"], rows["sot-bitcoin"], rows["sot-torus"]
    assert (eth["state"], eth["circuit"], eth["reliability"], eth["consecutive_failures"], eth["reasons"]) == (
        "fresh",
        "closed",
        1.0,
        0,
        [],
    )
    assert eth["last_rows"] == sum(rows_for(t, "ethereum", RECENT.isoformat()) for t in INGESTED)
    assert eth["cadence_s"] == 86_400
    assert eth["last_bytes"] > 0
    assert eth["last_success"].endswith("Z")
    assert len(eth["last_success"]) == 20
    assert (eth["data_time"], eth["data_from"]) == (f"{RECENT}T00:00:00Z", "sot.raw_alerts: processing_date")
    assert eth["data_max_age_s"] == 3 * 86_400
    assert (btc["state"], btc["reliability"], btc["consecutive_failures"], btc["last_status"]) == (
        "never",
        0.0,
        1,
        "failed",
    )
    assert btc["reasons"][0].startswith("no successful run; last run failed (")
    assert (torus["state"], torus["last_status"], torus["reasons"]) == ("never", None, ["no run yet"])

    assert health_main([]) == 0
    table = capsys.readouterr().out.splitlines()
    header = next(line for line in table if line.startswith("instance"))
    assert [
        t for t in ("state", "circuit", "reliability", "since success", "data age", "every") if t not in header
    ] == []
    [eth_line] = [line for line in table if line.startswith("sot-ethereum ")]
    assert eth_line.split()[1:3] == ["fresh", "closed"]
    assert " 1 d " in eth_line  # the cadence in human units

    with open_ledger() as ledger:
        later = {r.name: r.state for r in health_rows(ledger, datetime.now(UTC) + timedelta(hours=30))}
        much_later = {r.name: r.state for r in health_rows(ledger, datetime.now(UTC) + timedelta(hours=60))}
    assert (later["sot-ethereum"], much_later["sot-ethereum"]) == ("late", "stale")

    # the publisher had nothing new: an unchanged run keeps the source fresh
    time.sleep(0.05)
    assert ingest_sot("ethereum", RECENT, base_url=server.base_url).status == "unchanged"
    with open_ledger() as ledger:
        [eth_row] = [r for r in health_rows(ledger) if r.name == "sot-ethereum"]
    assert (eth_row.state, eth_row.last_status, eth_row.reliability) == ("fresh", "unchanged", 1.0)


def test_data_age_comes_from_the_warehouse_not_the_run(
    home: Path, exports: Path, server: ExportServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run that just succeeded on old data: the run clock is fresh, the data clock says how old."""
    write_export(exports, "torus", DAY, 30)
    assert ingest_sot("torus", DAY, base_url=server.base_url).status == "loaded"
    assert query("SELECT max(processing_date) FROM sot.raw_alerts WHERE network = 'torus'") == [(DAY,)]

    report = health_report()
    torus = report.find("sot-torus")
    assert torus is not None
    now = datetime.fromisoformat(report.generated_at)
    expected_age = (now - datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)).total_seconds()
    assert torus.age_s is not None
    assert torus.age_s < 120
    assert torus.data_time == f"{DAY}T00:00:00Z"
    assert torus.data_age_s == pytest.approx(expected_age, abs=2)
    assert torus.state == "degraded"
    days = human_duration(expected_age)
    assert days.endswith(" d")
    assert torus.reasons == [f"newest data {DAY} is {days} old (expected at most 3 d)"]

    assert health_main([]) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("sot-torus ")]
    assert f" {days} " in line
    assert "degraded" in line

    # a newer processing date moves the data clock; the instance is on time again
    write_export(exports, "torus", RECENT, 30)
    ingest_sot("torus", RECENT, base_url=server.base_url)
    torus = health_report().find("sot-torus")
    assert torus is not None
    assert (torus.state, torus.data_time, torus.reasons) == ("fresh", f"{RECENT}T00:00:00Z", [])


def test_coffee_served_by_the_static_fallback_is_degraded(home: Path, httpserver: HTTPServer) -> None:
    """Only the dated ICO constant is reachable: the run loads, health says degraded and how old the price is."""
    httpserver.expect_request("/yahoo/v8/finance/chart/KC=F").respond_with_data("down", status=500)
    httpserver.expect_request("/stooq/q/d/l/").respond_with_data("not here", status=404)
    outcome = ingest_coffee(yahoo_url=httpserver.url_for("/yahoo"), stooq_url=httpserver.url_for("/stooq"))
    assert outcome.status == "loaded"
    assert query("SELECT provider, is_fallback, fallback_as_of FROM markets.coffee_prices") == [
        ("ico_static", True, ICO_FALLBACK.as_of)
    ]

    report = health_report()
    coffee = report.find("coffee-prices")
    assert coffee is not None
    assert (coffee.deployed, coffee.state, coffee.served_by, coffee.last_status) == (
        True,
        "degraded",
        "ico_static",
        "loaded",
    )
    assert coffee.age_s is not None
    assert coffee.age_s < 120
    assert coffee.data_time == f"{ICO_FALLBACK.as_of}T00:00:00Z"  # the constant's date, not the row's price_date
    age_days = (datetime.now(UTC).date() - ICO_FALLBACK.as_of).days
    assert coffee.data_age_s is not None
    assert coffee.data_age_s // 86_400 == age_days
    assert coffee.reasons[0] == "served by fallback ico_static (yahoo, stooq failed)"
    assert coffee.reasons[1].startswith(f"newest data {ICO_FALLBACK.as_of} is {age_days} d old")
    assert STATES.index(report.overall) >= STATES.index("degraded")


def test_table_aligns_long_names_and_lists_ad_hoc_instances_last(
    home: Path, exports: Path, server: ExportServer, configure: Callable[..., None]
) -> None:
    ad_hoc = "polygon-zkevm-cardona-testnet-archive"
    configure(sot_networks=f"ethereum,bitcoin,torus,{ad_hoc}")
    for network in ("ethereum", ad_hoc):
        write_export(exports, network, RECENT, 20)
        assert ingest_sot(network, RECENT, base_url=server.base_url).status == "loaded"

    report = health_report()
    names = [r.name for r in report.sources]
    deployed = [r.deployed for r in report.sources]
    assert deployed == sorted(deployed, reverse=True)  # every deployed instance before any ad-hoc one
    assert names[-1] == f"sot-{ad_hoc}"
    assert report.find(f"sot-{ad_hoc}").deployed is False  # type: ignore[union-attr]
    assert "ilostat-une-deap-sex-age-rt-a" in names  # the longest deployed name

    lines = health_table_text(report).splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("instance"))
    titles = ["state", "circuit", "reliability", "since success", "data age", "every", "last status"]
    starts = {t: lines[header].index(t) for t in titles}
    ends = {t: starts[t] + len(t) for t in titles}
    assert set(lines[header + 1]) == {"─"}
    assert lines[-1].startswith("ad hoc: an instance not deployed in prefect.yaml")  # the mark is explained
    rows = [line for line in lines[header + 2 : -1] if line]
    assert len(rows) == len(report.sources)
    for line, row in zip(rows, report.sources, strict=True):
        assert line.startswith(row.name + " ")  # names are whole, never run into the next column
        assert line[starts["state"] :].startswith(row.state + " ")  # left-aligned columns start together
        assert line[starts["circuit"] :].startswith(row.circuit + " ")
        assert line[: ends["every"]].endswith(" " + ("ad hoc" if not row.deployed else human_duration(row.cadence_s)))
        assert line[: ends["reliability"]].endswith(
            " " + ("-" if row.reliability is None else f"{row.reliability:.2f}")
        )
    [last] = rows[-1:]
    assert last.startswith(f"sot-{ad_hoc} ")
    assert "ad hoc" in last
    assert lines[lines.index(last) - 1] == ""  # the ad-hoc section stands apart

    # the ad-hoc instance never counts for the overall status
    assert report.counts == {state: n for state, n in report.counts.items() if n}
    assert sum(report.counts.values()) == sum(deployed)


def _row(name: str, state: str, deployed: bool = True) -> SourceHealth:
    return SourceHealth(
        name=name,
        source="sot",
        deployed=deployed,
        state=state,  # type: ignore[arg-type]
        reasons=[],
        circuit="closed",
        reliability=None,
        consecutive_failures=0,
        last_success=None,
        age_s=None,
        cadence_s=None,
        data_time=None,
        data_age_s=None,
        data_max_age_s=None,
        data_from=None,
        served_by=None,
        quality_score=None,
        last_status=None,
        last_rows=None,
        last_bytes=None,
    )


def test_overall_is_the_worst_deployed_state_and_units_are_human() -> None:
    rows = [_row("a", "fresh"), _row("b", "degraded"), _row("c", "late"), _row("x", "damaged", deployed=False)]
    report = build_report(rows)
    assert (report.overall, report.counts) == ("late", {"fresh": 1, "degraded": 1, "late": 1})
    assert build_report([_row("a", "fresh"), _row("b", "unscheduled")]).overall == "fresh"
    assert build_report([_row("a", "stale"), _row("b", "damaged")]).overall == "damaged"
    assert build_report([]).overall == "fresh"
    assert [human_duration(s) for s in (None, 12, 447.4, 720, 5400, 86_400, 7_948_800)] == [
        "-",
        "12 s",
        "7.4 min",
        "12 min",
        "1.5 h",
        "1 d",
        "92 d",
    ]
    assert state_of("stale", damaged=False, degraded=True) == "stale"  # a late run outranks a degraded one
    assert state_of("fresh", damaged=False, degraded=True) == "degraded"
    assert state_of("fresh", damaged=True, degraded=False) == "damaged"


def test_degraded_reasons_quality_repair_and_partial() -> None:
    now = datetime(2026, 12, 4, 12, tzinfo=UTC)
    good = {"notes": json.dumps({"providers": {"winner": "ecb", "failures": []}}), "quality_score": 0.99}
    assert degraded_reasons(good, {"status": "loaded"}, None, now, 0.9) == []
    low = {**good, "quality_score": 0.8}
    assert degraded_reasons(low, {"status": "loaded"}, None, now, 0.9) == ["quality 0.80 below 0.90"]
    fx_fallback = {"notes": json.dumps({"providers": {"winner": "erapi", "failures": [{"provider": "ecb"}]}})}
    assert degraded_reasons(fx_fallback, None, None, now, 0.9) == ["served by fallback erapi (ecb failed)"]
    repaired = {"status": "repaired", "error": "raw_alerts: expected {'b': 3}, found {}"}
    assert degraded_reasons(None, repaired, None, now, 0.9) == [
        "last run repaired the warehouse: raw_alerts: expected {'b': 3}, found {}"
    ]
    assert degraded_reasons(None, {"status": "partial", "error": None}, None, now, 0.9) == ["last run was partial"]


def test_health_flow_records_freshness_and_returns_rows(
    ledger_backend: str, exports: Path, server: ExportServer
) -> None:
    write_export(exports, "torus", RECENT, 40)
    ingest_sot("torus", RECENT, base_url=server.base_url)
    report = report_health()
    rows = {r["name"]: r for r in report["sources"]}
    assert rows["sot-torus"]["state"] == "fresh"
    assert report["overall"] == "never"
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["source-health"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert artifact.type == "markdown"
    text = str(artifact.data)
    assert text.startswith("**Overall: never**")
    assert "| instance | state | since success | data age | every | why |" in text
    [torus] = [line for line in text.splitlines() if line.startswith("| sot-torus |")]
    assert torus.startswith("| sot-torus | fresh | ")
    assert "| 1 d |" in torus  # data age and cadence in days, not 86400.0
    assert max(len(line) for line in text.splitlines()) <= 160  # fits a laptop screen
    assert "86400" not in text
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
