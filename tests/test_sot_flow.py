"""The SOT flow end to end: real HTTP server, real embedded warehouse, real ledger."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from devtools.export_server import ExportServer
from devtools.generate import write_export
from flows.sot import ingest_sot
from headwater.errors import HeadwaterError
from tests.helpers import (
    INGESTED,
    batch_ids,
    edit_manifest,
    ledger_runs,
    manifest_rows,
    query,
    rewrite_manifest,
    rows_for,
    tables,
    temp_leftovers,
)

DAY = date(2026, 11, 22)
DAY_S = DAY.isoformat()


def test_happy_path_loads_every_contract_table_and_records_the_run(
    home: Path, exports: Path, server: ExportServer
) -> None:
    export = write_export(exports, "ethereum", DAY, 300)
    outcome = ingest_sot("ethereum", DAY, base_url=server.base_url)

    expected = manifest_rows(export)
    assert outcome.status == "loaded"
    for table in INGESTED:
        assert rows_for(table, "ethereum", DAY_S) == expected[table] > 0
        assert batch_ids(table, "ethereum", DAY_S) == {outcome.batch_id}
    assert outcome.rows_by_table == {t: expected[t] for t in INGESTED}
    [run] = ledger_runs("sot-ethereum")
    assert run["status"] == "loaded"
    assert run["partition_key"] == f"ethereum/{DAY_S}"
    assert run["rows_loaded"] == sum(expected[t] for t in INGESTED)
    assert run["bytes"] > 0
    assert run["manifest_hash"]
    assert run["duration_s"] > 0
    assert temp_leftovers() == []
    assert not any(t.startswith(("_stg_", "_bak_")) for t in tables())


def test_values_survive_the_load(home: Path, exports: Path, server: ExportServer) -> None:
    export = write_export(exports, "bitcoin", DAY, 50)
    ingest_sot("bitcoin", DAY, base_url=server.base_url)
    source = pl.read_parquet(export / "raw_alerts.parquet").sort("alert_id")
    loaded = query(
        "SELECT alert_id, address, severity, volume_usd, detected_at, description, window_days "
        "FROM sot.raw_alerts ORDER BY alert_id"
    )
    first = source.row(0, named=True)
    assert loaded[0][:4] == (first["alert_id"], first["address"], first["severity"], first["volume_usd"])
    assert loaded[0][4].replace(tzinfo=None) == first["detected_at"].replace(tzinfo=None)
    assert [r[5] for r in loaded] == source["description"].to_list()
    assert {r[6] for r in loaded} == {195}


def test_rerun_is_unchanged_and_adds_nothing(home: Path, exports: Path, server: ExportServer) -> None:
    export = write_export(exports, "ethereum", DAY, 200)
    first = ingest_sot("ethereum", DAY, base_url=server.base_url)
    requests_before = len(server.requests)
    second = ingest_sot("ethereum", DAY, base_url=server.base_url)

    assert (first.status, second.status) == ("loaded", "unchanged")
    for table, rows in manifest_rows(export).items():
        if table in INGESTED:
            assert rows_for(table, "ethereum", DAY_S) == rows
    assert [r["status"] for r in ledger_runs("sot-ethereum")] == ["loaded", "unchanged"]
    assert server.requests[requests_before:] == [f"/exports/ethereum/{DAY_S}/META.json"]


def test_changed_export_replaces_the_partition_exactly(home: Path, exports: Path, server: ExportServer) -> None:
    write_export(exports, "ethereum", DAY, 400)
    write_export(exports, "bitcoin", DAY, 100)
    ingest_sot("bitcoin", DAY, base_url=server.base_url)
    first = ingest_sot("ethereum", DAY, base_url=server.base_url)
    bitcoin_before = {t: rows_for(t, "bitcoin", DAY_S) for t in INGESTED}

    export = write_export(exports, "ethereum", DAY, 120, salt=1)
    second = ingest_sot("ethereum", DAY, base_url=server.base_url)

    assert second.status == "loaded"
    assert second.batch_id != first.batch_id
    for table, rows in manifest_rows(export).items():
        if table in INGESTED:
            assert rows_for(table, "ethereum", DAY_S) == rows
            assert batch_ids(table, "ethereum", DAY_S) == {second.batch_id}
    assert {t: rows_for(t, "bitcoin", DAY_S) for t in INGESTED} == bitcoin_before


def test_excluded_table_is_never_loaded(home: Path, exports: Path, server: ExportServer) -> None:
    export = write_export(exports, "torus", DAY, 100)
    assert manifest_rows(export)["raw_money_flows"] > 0
    outcome = ingest_sot("torus", DAY, base_url=server.base_url)
    assert "raw_money_flows" not in outcome.rows_by_table
    assert "raw_money_flows" not in tables()
    assert f"/exports/torus/{DAY_S}/raw_money_flows.parquet" not in server.requests


def test_exclusion_is_configuration_not_code(
    home: Path, exports: Path, server: ExportServer, configure: Callable[..., None]
) -> None:
    configure(sot_excluded_tables="")
    export = write_export(exports, "torus", DAY, 100)
    ingest_sot("torus", DAY, base_url=server.base_url)
    assert rows_for("raw_money_flows", "torus", DAY_S) == manifest_rows(export)["raw_money_flows"]


def _remove(name: str) -> Callable[[Path], None]:
    return lambda export: (export / name).unlink()


def _grow(export: Path) -> None:
    with (export / "raw_features.parquet").open("ab") as handle:
        handle.write(b"trailing bytes")


def _flip_byte(export: Path) -> None:
    path = export / "raw_clusters.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _bad_json(export: Path) -> None:
    (export / "META.json").write_text('{"name": "sot-ethereum", "resources": [')


def _partition(export: Path) -> None:
    edit_manifest(export, lambda d: d["x-headwater"]["partition"].update(network="bitcoin"))


def _escape(export: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["resources"][0]["path"] = "../../bitcoin/2026-11-22/raw_alerts.parquet"

    edit_manifest(export, edit)


def _unknown_table(export: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        extra = dict(doc["resources"][0], name="raw_secrets")
        doc["resources"].append(extra)

    edit_manifest(export, edit)


def _schema_violation(export: Path) -> None:
    path = export / "raw_alerts.parquet"
    frame = pl.read_parquet(path)
    index = pl.int_range(pl.len())
    frame = frame.with_columns(
        pl.when(index < 7).then(1.5).otherwise(pl.col("severity")).alias("severity"),
        pl.when(index.is_between(10, 12)).then(pl.lit("")).otherwise(pl.col("address")).alias("address"),
        pl.when(index == 20).then(-5).otherwise(pl.col("block_number")).alias("block_number"),
    )
    frame.write_parquet(path)
    rewrite_manifest(export)


def _duplicate_keys(export: Path) -> None:
    path = export / "raw_features.parquet"
    frame = pl.read_parquet(path)
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 1)
        .then(pl.col("address").first())
        .otherwise(pl.col("address"))
        .alias("address")
    )
    frame.write_parquet(path)
    rewrite_manifest(export)


def _two_bad_tables(export: Path) -> None:
    _duplicate_keys(export)
    _schema_violation(export)


FAILURES = {
    "no_meta": (_remove("META.json"), "manifest_invalid", "META.json: expected at http://"),
    "missing_file": (
        _remove("raw_clusters.parquet"),
        "integrity_failed",
        "raw_clusters.parquet: listed in META.json",
    ),
    "wrong_size": (_grow, "integrity_failed", "raw_features.parquet: size mismatch: expected"),
    "wrong_hash": (_flip_byte, "integrity_failed", "raw_clusters.parquet: sha256 mismatch: expected"),
    "bad_json": (_bad_json, "manifest_invalid", "expected valid JSON, found a parse error"),
    "partition_mismatch": (
        _partition,
        "manifest_invalid",
        "partition mismatch: expected network=ethereum, processing_date=2026-11-22, "
        "found network=bitcoin, processing_date=2026-11-22",
    ),
    "path_escape": (_escape, "manifest_invalid", "expected a relative path inside the export directory"),
    "unknown_table": (_unknown_table, "manifest_invalid", "found 'raw_secrets'"),
    "schema_violation": (_schema_violation, "schema_violation", "raw_alerts.parquet: 3 failing check(s)"),
    "duplicate_key": (_duplicate_keys, "schema_violation", "expected key (address) unique within the export"),
    # staged at once: the first failing table in the manifest's order is reported, whichever fails first
    "two_bad_tables": (_two_bad_tables, "schema_violation", "raw_alerts.parquet: 3 failing check(s)"),
}


@pytest.mark.parametrize("case", FAILURES)
def test_bad_export_fails_specifically_and_leaves_nothing(
    case: str, home: Path, exports: Path, server: ExportServer
) -> None:
    damage, kind, message = FAILURES[case]
    export = write_export(exports, "ethereum", DAY, 150)
    damage(export)

    with pytest.raises(HeadwaterError) as raised:
        ingest_sot("ethereum", DAY, base_url=server.base_url)

    assert raised.value.kind == kind
    assert message in str(raised.value)
    assert str(raised.value).startswith("sot-ethereum 2026-11-22")
    for table in INGESTED:
        assert rows_for(table, "ethereum", DAY_S) == 0
    [run] = ledger_runs("sot-ethereum")
    assert (run["status"], run["error_kind"]) == ("failed", kind)
    assert message in run["error"]
    assert temp_leftovers() == []
    assert not any(t.startswith(("_stg_", "_bak_")) for t in tables())


def test_schema_violation_reports_every_failing_check(
    home: Path, exports: Path, server: ExportServer, configure: Callable[..., None]
) -> None:
    configure(validation_batch_rows="4")  # failures span several batches; counts add up
    export = write_export(exports, "ethereum", DAY, 150)
    _schema_violation(export)
    with pytest.raises(HeadwaterError) as raised:
        ingest_sot("ethereum", DAY, base_url=server.base_url)
    text = str(raised.value)
    assert "severity: less_than_or_equal_to(1) failed for 7 row(s), e.g. '1.5'" in text
    assert "address: str_length(1, 128) failed for 3 row(s)" in text
    assert "block_number: greater_than_or_equal_to(0) failed for 1 row(s), e.g. '-5'" in text


def test_failed_update_keeps_the_previous_version(home: Path, exports: Path, server: ExportServer) -> None:
    write_export(exports, "ethereum", DAY, 100)
    first = ingest_sot("ethereum", DAY, base_url=server.base_url)
    counts = {t: rows_for(t, "ethereum", DAY_S) for t in INGESTED}
    export = write_export(exports, "ethereum", DAY, 300, salt=2)
    _schema_violation(export)
    with pytest.raises(HeadwaterError):
        ingest_sot("ethereum", DAY, base_url=server.base_url)
    assert {t: rows_for(t, "ethereum", DAY_S) for t in INGESTED} == counts
    assert all(batch_ids(t, "ethereum", DAY_S) == {first.batch_id} for t in INGESTED)


def test_http_500_then_success_is_retried(home: Path, exports: Path, server: ExportServer) -> None:
    export = write_export(exports, "ethereum", DAY, 100)
    path = f"ethereum/{DAY_S}/raw_alerts.parquet"
    server.fail(path, 500)
    outcome = ingest_sot("ethereum", DAY, base_url=server.base_url)
    assert outcome.status == "loaded"
    assert server.requests.count(f"/exports/{path}") == 2
    assert rows_for("raw_alerts", "ethereum", DAY_S) == manifest_rows(export)["raw_alerts"]
    assert temp_leftovers() == []


def test_http_404_is_not_retried(home: Path, exports: Path, server: ExportServer) -> None:
    write_export(exports, "ethereum", DAY, 100)
    path = f"ethereum/{DAY_S}/raw_features.parquet"
    server.fail(path, 404)
    with pytest.raises(HeadwaterError) as raised:
        ingest_sot("ethereum", DAY, base_url=server.base_url)
    assert raised.value.kind == "integrity_failed"
    assert "raw_features.parquet: listed in META.json, expected at" in str(raised.value)
    assert "found HTTP 404" in str(raised.value)
    assert server.requests.count(f"/exports/{path}") == 1
    assert all(rows_for(t, "ethereum", DAY_S) == 0 for t in INGESTED)
    assert temp_leftovers() == []


def test_persistent_5xx_fails_after_the_last_attempt(
    home: Path, exports: Path, server: ExportServer, configure: Callable[..., None]
) -> None:
    configure(http_attempts="3")
    write_export(exports, "ethereum", DAY, 100)
    path = f"ethereum/{DAY_S}/META.json"
    server.fail(path, 503, 503, 503, 503)
    with pytest.raises(HeadwaterError) as raised:
        ingest_sot("ethereum", DAY, base_url=server.base_url)
    assert raised.value.kind == "transient_fetch_failed"
    assert "HTTP 503" in str(raised.value)
    assert server.requests.count(f"/exports/{path}") == 3
    [run] = ledger_runs("sot-ethereum")
    assert run["status"] == "failed"
    assert "HTTP 503" in run["error"]


def test_publish_failure_restores_tables_already_swapped(home: Path, exports: Path, server: ExportServer) -> None:
    write_export(exports, "ethereum", DAY, 100)
    first = ingest_sot("ethereum", DAY, base_url=server.base_url)
    before = {t: rows_for(t, "ethereum", DAY_S) for t in INGESTED}
    # Schema drift on the third table: its REPLACE PARTITION fails after two tables were swapped.
    query("ALTER TABLE sot.raw_clusters ADD COLUMN drift String DEFAULT ''")
    write_export(exports, "ethereum", DAY, 250, salt=3)

    with pytest.raises(HeadwaterError) as raised:
        ingest_sot("ethereum", DAY, base_url=server.base_url)

    assert raised.value.kind == "publish_failed"
    assert "publishing raw_clusters failed" in str(raised.value)
    assert "restored raw_features, raw_alerts to the previous version" in str(raised.value)
    assert {t: rows_for(t, "ethereum", DAY_S) for t in INGESTED} == before
    assert all(batch_ids(t, "ethereum", DAY_S) == {first.batch_id} for t in INGESTED)
    assert not any(t.startswith(("_stg_", "_bak_")) for t in tables())
    assert temp_leftovers() == []


def test_two_networks_concurrently(home: Path, exports: Path, server: ExportServer) -> None:
    expected = {n: manifest_rows(write_export(exports, n, DAY, 300)) for n in ("ethereum", "bitcoin")}
    results: dict[str, Any] = {}

    def run(network: str) -> None:
        try:
            results[network] = ingest_sot(network, DAY, base_url=server.base_url)
        except Exception as error:  # surfaced by the assertion below
            results[network] = error

    threads = [threading.Thread(target=run, args=(n,)) for n in expected]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert {n: getattr(r, "status", r) for n, r in results.items()} == {
        "ethereum": "loaded",
        "bitcoin": "loaded",
    }
    for network, rows in expected.items():
        for table in INGESTED:
            assert rows_for(table, network, DAY_S) == rows[table]
    for table in INGESTED:
        total = query(f"SELECT count(), uniqExact(_batch_id) FROM sot.{table}")[0]
        assert total == (sum(rows[table] for rows in expected.values()), 2)


def test_arrow_ingest_path_matches_file_path(
    home: Path, exports: Path, server: ExportServer, configure: Callable[..., None]
) -> None:
    """The server-side ingest path (Arrow batches through the client), run on chDB."""
    configure(warehouse_ingest="arrow")
    export = write_export(exports, "ethereum", DAY, 300)
    outcome = ingest_sot("ethereum", DAY, base_url=server.base_url)
    for table in INGESTED:
        assert rows_for(table, "ethereum", DAY_S) == manifest_rows(export)[table]
        assert batch_ids(table, "ethereum", DAY_S) == {outcome.batch_id}
    source = pl.read_parquet(export / "raw_features.parquet")
    loaded = query("SELECT sum(tx_count), countIf(risk_score IS NULL) FROM sot.raw_features")[0]
    assert loaded == (source["tx_count"].sum(), source["risk_score"].null_count())


def test_file_base_url(home: Path, exports: Path) -> None:
    export = write_export(exports, "bitcoin", DAY, 80)
    outcome = ingest_sot("bitcoin", DAY, base_url=exports.as_uri())
    assert outcome.status == "loaded"
    assert rows_for("raw_alerts", "bitcoin", DAY_S) == manifest_rows(export)["raw_alerts"]


def test_unknown_network_is_a_configuration_error(home: Path, server: ExportServer) -> None:
    with pytest.raises(HeadwaterError, match="expected a network in ethereum, bitcoin, torus, found 'dogecoin'"):
        ingest_sot("dogecoin", DAY, base_url=server.base_url)
