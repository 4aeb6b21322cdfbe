"""Unit tests of the shared pieces: manifest parsing, HTTP retries, validation, DDL, blocks."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from blocks.warehouse import ClickHouseWarehouse
from devtools.export_server import ExportServer
from devtools.generate import write_export
from headwater.engine_checks import compile_checks, parquet_matches
from headwater.errors import (
    FetchError,
    IntegrityError,
    ManifestError,
    NotFoundError,
    SchemaViolation,
    TransientFetchError,
)
from headwater.http import download_file
from headwater.loading import StagedTable, drop_run_tables, ensure_database, stage_checked, stage_concurrently
from headwater.manifest import parse_manifest
from headwater.settings import Settings, get_settings
from headwater.sources.sot.contract import SOT
from headwater.tables import clickhouse_type, table_ddl
from headwater.validation import validate_parquet

DAY = date(2026, 11, 22)


def _manifest(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "name": "sot-ethereum-2026-11-22",
        "created": "2026-11-22T00:40:00Z",
        "resources": [
            {
                "name": "raw_alerts",
                "path": "raw_alerts.parquet",
                "format": "parquet",
                "bytes": 10,
                "hash": "sha256:" + "a" * 64,
                "rows": 1,
            },
        ],
        "x-headwater": {
            "source": "sot",
            "partition": {"network": "ethereum", "processing_date": "2026-11-22"},
            "window_days": 195,
        },
    }
    doc.update(changes)
    return doc


def test_manifest_parses_frictionless_descriptor() -> None:
    raw = json.dumps(_manifest()).encode()
    manifest = parse_manifest("sot", raw)
    assert manifest.partition == {"network": "ethereum", "processing_date": "2026-11-22"}
    assert manifest.constants == {"window_days": 195}
    assert manifest.resource("raw_alerts").sha256 == "a" * 64
    assert len(manifest.content_hash) == 64


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("raw_alerts.parquet", True),
        ("sub/raw_alerts.parquet", True),
        ("../x.parquet", False),
        ("/etc/passwd", False),
        ("a/../../x", False),
        ("https://evil/x.parquet", False),
        ("C:/x.parquet", False),
        ("a//b.parquet", False),
        ("a\\..\\b", False),
    ],
)
def test_manifest_rejects_paths_outside_the_export(path: str, ok: bool) -> None:
    doc = _manifest()
    doc["resources"][0]["path"] = path  # type: ignore[index]
    raw = json.dumps(doc).encode()
    if ok:
        assert parse_manifest("sot", raw).resources[0].path == path
    else:
        with pytest.raises(ManifestError, match="expected a relative path inside the export directory"):
            parse_manifest("sot", raw)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"resources": "x"}, "expected 'resources' to be a list, found 'x'"),
        ({"created": "yesterday"}, "expected 'created' as an RFC 3339 timestamp, found 'yesterday'"),
        ({"x-headwater": {"source": "sot"}}, "expected field 'x-headwater.partition', found none"),
    ],
)
def test_manifest_errors_name_what_was_expected_and_found(change: dict[str, object], message: str) -> None:
    with pytest.raises(ManifestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_manifest("sot", json.dumps(_manifest(**change)).encode())


def test_manifest_rejects_bad_hash_and_bool_sizes() -> None:
    doc = _manifest()
    doc["resources"][0]["hash"] = "md5:abc"  # type: ignore[index]
    with pytest.raises(ManifestError, match="expected hash as 'sha256:<64 hex>', found 'md5:abc'"):
        parse_manifest("sot", json.dumps(doc).encode())
    doc = _manifest()
    doc["resources"][0]["bytes"] = True  # type: ignore[index]
    with pytest.raises(ManifestError, match="expected 'bytes' to be an integer, found True"):
        parse_manifest("sot", json.dumps(doc).encode())


def test_download_retries_transient_errors_and_honours_retry_after(
    home: Path, exports: Path, server: ExportServer, tmp_path: Path
) -> None:
    (exports / "f.bin").write_bytes(b"x" * 5000)
    server.fail("f.bin", 503, 429)
    started = time.monotonic()
    got = download_file("test", f"{server.base_url}/f.bin", tmp_path / "f.bin")
    assert got.bytes == 5000
    assert (tmp_path / "f.bin").read_bytes() == b"x" * 5000
    assert server.requests.count("/exports/f.bin") == 3
    assert time.monotonic() - started < 5


def test_retry_after_stretches_the_backoff(
    home: Path, exports: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from headwater.http import _BackoffWait

    class _State:
        def __init__(self, error: Exception) -> None:
            self.attempt_number = 1
            self.outcome = type("O", (), {"exception": lambda _self: error})()

    wait = _BackoffWait(Settings(http_backoff_initial_s=0.01, http_backoff_max_s=0.05, http_retry_after_max_s=30))
    assert wait(_State(TransientFetchError("s", "u", "HTTP 429", 429, retry_after_s=7))) >= 7  # type: ignore[arg-type]
    assert wait(_State(TransientFetchError("s", "u", "HTTP 429", 429, retry_after_s=900))) <= 30  # type: ignore[arg-type]


def test_client_errors_are_not_retried(home: Path, exports: Path, server: ExportServer, tmp_path: Path) -> None:
    server.fail("forbidden.bin", 403)
    with pytest.raises(FetchError, match=r"forbidden.bin: HTTP 403 Forbidden") as raised:
        download_file("test", f"{server.base_url}/forbidden.bin", tmp_path / "x")
    assert not raised.value.transient
    assert server.requests.count("/exports/forbidden.bin") == 1
    with pytest.raises(NotFoundError):
        download_file("test", f"{server.base_url}/absent.bin", tmp_path / "y")
    assert server.requests.count("/exports/absent.bin") == 1


def test_connection_refused_is_transient(home: Path, tmp_path: Path) -> None:
    with pytest.raises(TransientFetchError, match="ConnectError"):
        download_file("test", "http://127.0.0.1:9/x", tmp_path / "x")


def _damaged_alerts(path: Path) -> None:
    import polars as pl

    frame = pl.read_parquet(path)
    index = pl.int_range(pl.len())
    frame.with_columns(
        pl.when(index < 2).then(1.5).otherwise(pl.col("severity")).alias("severity"),
        pl.when(index == 3).then(pl.lit("x" * 200)).otherwise(pl.col("address")).alias("address"),
        pl.when(index == 4).then(pl.lit("solana")).otherwise(pl.col("network")).alias("network"),
    ).write_parquet(path)


@pytest.mark.parametrize("mode", ["file", "arrow"])
def test_engine_checks_report_what_pandera_reports(home: Path, tmp_path: Path, mode: str) -> None:
    """The model's checks compiled to SQL find exactly the failures pandera finds in the file.

    file mode: the checks guard the staging insert, which stops at the first bad row, and
    the file is staged again to count them; arrow mode: one scan of the staged rows.
    """
    export = write_export(tmp_path / "a", "ethereum", DAY, 40)
    path = export / "raw_alerts.parquet"
    spec = SOT.table("raw_alerts")
    expected = {"network": "ethereum", "processing_date": DAY, "window_days": 195}

    def stage(client: Any) -> StagedTable:
        return stage_checked(
            client,
            source="sot-ethereum",
            database="sot",
            spec=spec,
            partition_by=SOT.partition_columns,
            staging="_stg_raw_alerts_t1",
            path=path,
            batch_id="b1",
            mode=mode,
            expected=expected,
            batch_rows=7,
        )

    with ClickHouseWarehouse.from_settings().session() as client:
        ensure_database(client, "sot")
        assert stage(client).rows == 40  # a good file passes, every row staged
        _damaged_alerts(path)
        with pytest.raises(SchemaViolation) as by_pandera:
            validate_parquet("sot-ethereum", spec, path, expected, batch_rows=7)
        assert parquet_matches(path, spec)
        with pytest.raises(SchemaViolation) as in_engine:
            stage(client)
        drop_run_tables(client, "sot", "t1")
    message = str(in_engine.value)
    assert message.startswith("sot-ethereum: raw_alerts.parquet: 3 failing check(s): ")
    assert "severity: less_than_or_equal_to(1) failed for 2 row(s), e.g. '1.5', '1.5'" in message
    assert "address: str_length(1, 128) failed for 1 row(s)" in message
    assert "network: equal_to(ethereum) failed for 1 row(s), e.g. 'solana'" in message
    assert message == str(by_pandera.value)


def test_tables_of_a_batch_stage_at_once_each_on_its_own_client(home: Path) -> None:
    """Two staging jobs run at the same time: the first waits for the second, which would never start in turn."""
    second_ran = threading.Event()

    def staged(client: Any, name: str) -> StagedTable:
        client.command(f"CREATE TABLE sot.{name} (x UInt8) ENGINE = MergeTree ORDER BY x")
        client.command(f"INSERT INTO sot.{name} VALUES (1)")
        rows = int(client.command(f"SELECT count() FROM sot.{name}"))
        return StagedTable(table=name, staging=name, rows=rows)

    def first(client: Any) -> StagedTable:
        if not second_ran.wait(timeout=60):
            raise AssertionError("the second table was not staged while the first one was")
        return staged(client, "_stg_first_t1")

    def second(client: Any) -> StagedTable:
        second_ran.set()
        return staged(client, "_stg_second_t1")

    with ClickHouseWarehouse.from_settings().sessions(2) as clients:
        ensure_database(clients[0], "sot")
        done = stage_concurrently(clients, [(0, first), (1, second)])
        assert [item.table for item in done] == ["_stg_first_t1", "_stg_second_t1"]
        assert [item.rows for item in done] == [1, 1]
        assert drop_run_tables(clients[0], "sot", "t1") == ["_stg_first_t1", "_stg_second_t1"]


def test_concurrent_staging_reports_the_first_failure_in_table_order(home: Path) -> None:
    """However the jobs finish, the batch fails with the first table's error, after every running job ended."""
    finished: list[str] = []

    def slow_failure(client: Any) -> StagedTable:
        time.sleep(0.3)
        client.command("SELECT 1")
        finished.append("first")
        raise SchemaViolation("sot-ethereum", "raw_alerts.parquet: the first table's failure")

    def fast_failure(client: Any) -> StagedTable:
        finished.append("second")
        raise SchemaViolation("sot-ethereum", "raw_features.parquet: the second table's failure")

    with (
        ClickHouseWarehouse.from_settings().sessions(2) as clients,
        pytest.raises(SchemaViolation, match="the first table's failure"),
    ):
        stage_concurrently(clients, [(0, slow_failure), (1, fast_failure)])
    assert sorted(finished) == ["first", "second"]


def test_a_table_arriving_after_a_later_one_failed_is_still_staged_and_reported(home: Path) -> None:
    """The manifest's first table downloads last: its failure, not the earlier-finished one's, is the batch's."""
    failed_second = threading.Event()

    def second(client: Any) -> StagedTable:
        client.command("SELECT 1")
        failed_second.set()
        raise SchemaViolation("sot-ethereum", "raw_features.parquet: the second table's failure")

    def first(client: Any) -> StagedTable:
        client.command("SELECT 1")
        raise SchemaViolation("sot-ethereum", "raw_alerts.parquet: the first table's failure")

    def arriving() -> Iterator[tuple[int, Any]]:
        yield 1, second
        assert failed_second.wait(timeout=30)
        time.sleep(0.05)  # its future is done
        yield 0, first

    with (
        ClickHouseWarehouse.from_settings().sessions(2) as clients,
        pytest.raises(SchemaViolation, match="the first table's failure"),
    ):
        stage_concurrently(clients, arriving())


def test_a_failed_download_stops_staging_after_the_running_tables_finish(home: Path) -> None:
    """Tables stage while others download: a download that fails is the batch's error, once the staging ended."""
    finished: list[str] = []

    def staged(client: Any) -> StagedTable:
        time.sleep(0.2)
        client.command("SELECT 1")
        finished.append("raw_clusters")
        return StagedTable(table="raw_clusters", staging="_stg_raw_clusters_t1", rows=1)

    def arriving() -> Iterator[tuple[int, Any]]:
        yield 2, staged
        raise IntegrityError("sot-ethereum 2026-11-22: raw_alerts.parquet", "sha256 mismatch: expected a, found b")

    with (
        ClickHouseWarehouse.from_settings().sessions(2) as clients,
        pytest.raises(IntegrityError, match=r"raw_alerts\.parquet: sha256 mismatch"),
    ):
        stage_concurrently(clients, arriving())
    assert finished == ["raw_clusters"]


def test_a_table_failure_hidden_by_a_failed_download_is_logged(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The download's error is the batch's; a table that failed meanwhile is not lost: its failure is logged."""
    table_failed = threading.Event()

    def failing(client: Any) -> StagedTable:
        client.command("SELECT 1")
        table_failed.set()
        raise SchemaViolation("sot-ethereum", "raw_clusters.parquet: cluster_size: greater_than_or_equal_to(1) failed")

    def arriving() -> Iterator[tuple[int, Any]]:
        yield 2, failing
        assert table_failed.wait(timeout=30)
        raise IntegrityError("sot-ethereum 2026-11-22: raw_alerts.parquet", "sha256 mismatch: expected a, found b")

    with (
        caplog.at_level("WARNING", logger="headwater"),
        ClickHouseWarehouse.from_settings().sessions(2) as clients,
        pytest.raises(IntegrityError, match="sha256 mismatch"),
    ):
        stage_concurrently(clients, arriving())
    assert "also failed while staging: sot-ethereum: raw_clusters.parquet: cluster_size" in caplog.text


def test_every_contract_check_compiles_to_sql() -> None:
    """The engine path covers every declared table: no check is left to a second decode of the file."""
    from headwater.sources import DECLARED

    for source in DECLARED:
        for spec in source.tables.values():
            assert compile_checks(spec.schema), f"{source.name}.{spec.name} has no checks"


def test_a_file_off_the_contract_is_reported_by_pandera(home: Path, tmp_path: Path) -> None:
    """A null in a required column fails the engine's insert; pandera then names it."""
    import polars as pl

    export = write_export(tmp_path / "a", "ethereum", DAY, 20)
    path = export / "raw_clusters.parquet"
    frame = pl.read_parquet(path)
    frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise(pl.col("cluster_type")).alias("cluster_type")
    ).write_parquet(path)
    spec = SOT.table("raw_clusters")
    with ClickHouseWarehouse.from_settings().session() as client:
        ensure_database(client, "sot")
        with pytest.raises(SchemaViolation, match="cluster_type: not_nullable failed for 1 row"):
            stage_checked(
                client,
                source="sot-ethereum",
                database="sot",
                spec=spec,
                partition_by=SOT.partition_columns,
                staging="_stg_raw_clusters_t2",
                path=path,
                batch_id="b2",
                mode="file",
                expected={},
                batch_rows=100,
            )
        drop_run_tables(client, "sot", "t2")


def test_clickhouse_types_follow_the_contract() -> None:
    import polars as pl

    assert clickhouse_type(pl.Datetime("ms", "UTC"), False) == "DateTime64(3, 'UTC')"
    assert clickhouse_type(pl.Float64(), True) == "Nullable(Float64)"
    ddl = table_ddl(SOT.table("raw_alerts"), "sot", "raw_alerts", SOT.partition_columns)
    assert "`volume_usd` Nullable(Float64)" in ddl
    assert "`description` Nullable(String)" in ddl
    assert "`_batch_id` String" in ddl
    assert "`_loaded_at` DateTime64(3, 'UTC')" in ddl
    assert "PARTITION BY (`network`, `processing_date`)" in ddl


def test_warehouse_block_defaults_to_embedded_chdb_and_hides_secrets(home: Path) -> None:
    warehouse = ClickHouseWarehouse.from_settings()
    assert warehouse.embedded
    assert warehouse.embedded_path == get_settings().home_dir / "warehouse"
    server = ClickHouseWarehouse(host="ch.internal", password=SecretStr("hunter2"), secure=True)
    assert server.describe() == "https://ch.internal:8443"
    assert "hunter2" not in repr(server)
    assert "hunter2" not in str(server.model_dump())
    assert ClickHouseWarehouse(dsn="https://user:pw@ch:8443/db").describe() == "https://ch:8443/db"


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_SOT_NETWORKS", "ethereum, torus")
    monkeypatch.setenv("HEADWATER_WAREHOUSE_URL", "chdb:///srv/wh")
    settings = Settings()
    assert settings.sot_networks == ["ethereum", "torus"]
    assert settings.warehouse_url == "chdb:///srv/wh"


def test_host_rate_limiter_spaces_requests_per_host() -> None:
    from headwater.http import HostRateLimiter

    limiter = HostRateLimiter()
    started = time.monotonic()
    for _ in range(3):
        limiter.wait("http://api.example/a", rate=20.0)  # at most 20 requests/s: 3 requests span >= 0.1 s
    limiter.wait("http://other.example/a", rate=20.0)  # another host is not held back by the first
    elapsed = time.monotonic() - started
    assert elapsed >= 0.1
