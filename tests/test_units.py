"""Unit tests of the shared pieces: manifest parsing, HTTP retries, validation, DDL, blocks."""

from __future__ import annotations

import json
import shutil
import time
from datetime import date
from pathlib import Path

import pytest
from prefect import flow
from pydantic import SecretStr

from blocks.warehouse import ClickHouseWarehouse
from devtools.export_server import ExportServer
from devtools.generate import write_export
from headwater.batch import BatchRequest
from headwater.errors import FetchError, ManifestError, NotFoundError, TransientFetchError
from headwater.http import download_file
from headwater.manifest import parse_manifest
from headwater.settings import Settings, get_settings
from headwater.sources.sot.contract import SOT
from headwater.tables import clickhouse_type, table_ddl
from tasks.validate import validate_table

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


def test_validation_is_cached_on_content_not_path(home: Path, tmp_path: Path) -> None:
    export = write_export(tmp_path / "a", "ethereum", DAY, 50)
    copy = tmp_path / "copy.parquet"
    shutil.copy(export / "raw_clusters.parquet", copy)
    from headwater.manifest import sha256_file

    digest = sha256_file(copy)
    request = BatchRequest(
        source=SOT,
        instance="sot-ethereum",
        partition={"network": "ethereum", "processing_date": DAY},
        constants={"window_days": 195},
        database="sot",
        run_id="r" * 32,
    )

    @flow
    def twice() -> tuple[str, str, int]:
        first = validate_table(request, "raw_clusters", copy, digest, return_state=True)
        copy.unlink()  # the second call must not need the file: same content, cached result
        second = validate_table(request, "raw_clusters", tmp_path / "elsewhere.parquet", digest, return_state=True)
        return first.name, second.name, second.result().rows

    first, second, rows = twice()
    assert (first, second, rows) == ("Completed", "Cached", 25)


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
