"""Hostile servers on loopback: every read is bounded in time and size, credentials stay with their host.

Run on its own: ``uv run pytest -q tests/test_hostile_http.py``.
"""

from __future__ import annotations

import gzip
import json
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from datetime import date
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from devtools.export_server import ExportServer
from devtools.generate import write_export
from flows.sot import ingest_sot
from headwater.batch import BatchRequest
from headwater.errors import (
    BodyTooLargeError,
    FetchError,
    IntegrityError,
    ManifestError,
    TimeoutFetchError,
)
from headwater.http import _retry_after_s, download_deadline_s, download_file, get
from headwater.manifest import Resource
from headwater.sources.sot.contract import SOT
from tasks.download import download_manifest, download_resource
from tests.helpers import INGESTED, manifest_rows, rows_for

DAY = date(2026, 11, 22)
SECRET_HEADERS = {
    "X-API-Key": "s3cret",
    "Authorization": "Bearer t0ken",
    "X-Session-Token": "tok",
    "Cookie": "session=abc",
    "X-Client-Secret": "shh",
}

Responder = Callable[[BaseHTTPRequestHandler], None]


class Hostile:
    """A loopback HTTP server whose answer per path the test scripts; it records every request's headers."""

    def __init__(self) -> None:
        self.routes: dict[str, Responder] = {}
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.stopping = threading.Event()
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.partition("?")[0]
                with lock:
                    outer.seen.append((path, {k.lower(): v for k, v in self.headers.items()}))
                outer.routes.get(path, lambda h: send(h, 404))(self)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def headers_seen(self, path: str) -> list[dict[str, str]]:
        return [headers for seen_path, headers in self.seen if seen_path == path]


@pytest.fixture
def hostile() -> Iterator[Callable[[], Hostile]]:
    """Start as many hostile servers (origins) as the test asks for; stop them after it."""
    started: list[Hostile] = []

    def start() -> Hostile:
        server = Hostile()
        server.thread.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stopping.set()
        server.httpd.shutdown()
        server.httpd.server_close()


def send(
    handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", headers: dict[str, str] | None = None
) -> None:
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def trickle(server: Hostile, total: int = 100, every_s: float = 0.5) -> Responder:
    """Announce ``total`` bytes, then send one byte every ``every_s`` seconds."""

    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(total))
        handler.end_headers()
        try:
            for _ in range(total):
                handler.wfile.write(b"x")
                handler.wfile.flush()
                if server.stopping.wait(every_s):
                    return
        except OSError:
            return  # the client gave up

    return respond


def redirect(location: str) -> Responder:
    return lambda handler: send(handler, 302, headers={"Location": location})


def replies(*responders: Responder) -> Responder:
    """Answer successive requests with ``responders`` in turn (the last one repeats)."""
    queue = list(responders)

    def respond(handler: BaseHTTPRequestHandler) -> None:
        (queue.pop(0) if len(queue) > 1 else queue[0])(handler)

    return respond


@cache
def gzip_bomb(gib: int = 1) -> bytes:
    """A valid gzip stream of ``gib`` GiB of zeros, about 1 MB on the wire per GiB."""
    zeros = bytes(1 << 20)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = deflater.compress(zeros) + deflater.flush(zlib.Z_FULL_FLUSH)  # byte-aligned, identical every MiB
    crc = 0
    for _ in range(gib << 10):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return header + block * (gib << 10) + deflater.flush() + struct.pack("<II", crc, (gib << 30) & 0xFFFFFFFF)


def sot_request(location: str) -> BatchRequest:
    return BatchRequest(
        source=SOT,
        instance="sot-ethereum",
        partition={"network": "ethereum", "processing_date": DAY},
        database="sot",
        location=location,
    )


# --- total deadline ---------------------------------------------------------------------------


def test_trickling_api_fails_with_timeout_within_its_deadline(
    configure: Callable[..., None], hostile: Callable[[], Hostile]
) -> None:
    configure(http_request_deadline_s="1.5", http_attempts="1")
    server = hostile()
    server.routes["/slow"] = trickle(server)

    started = time.monotonic()
    with pytest.raises(TimeoutFetchError) as raised:
        get("test", server.url("/slow"))
    elapsed = time.monotonic() - started

    assert raised.value.kind == "timeout"
    assert raised.value.transient
    assert "no complete answer within the 1.5 s deadline" in str(raised.value)
    assert server.url("/slow") in str(raised.value)
    assert 1.4 < elapsed < 4


def test_trickling_download_is_retried_but_every_attempt_is_bounded(
    configure: Callable[..., None], hostile: Callable[[], Hostile], tmp_path: Path
) -> None:
    configure(http_download_deadline_min_s="1.5", http_attempts="2")
    server = hostile()
    server.routes["/slow.parquet"] = trickle(server)
    dest = tmp_path / "slow.parquet"

    started = time.monotonic()
    with pytest.raises(TimeoutFetchError) as raised:
        download_file("test", server.url("/slow.parquet"), dest, expected_bytes=100)
    elapsed = time.monotonic() - started

    assert raised.value.kind == "timeout"
    assert "1.5 s deadline" in str(raised.value)
    assert len(server.headers_seen("/slow.parquet")) == 2  # transient: retried, each attempt cut at 1.5 s
    assert 2.9 < elapsed < 7
    assert dest.stat().st_size < 10


def test_download_deadline_grows_with_the_listed_bytes(configure: Callable[..., None]) -> None:
    configure(http_download_deadline_min_s="120", http_download_min_rate_bytes_s="1000")
    assert download_deadline_s(None) == 120
    assert download_deadline_s(50_000) == 120
    assert download_deadline_s(1_000_000) == 1000


# --- size caps --------------------------------------------------------------------------------


def test_gzip_bomb_manifest_stops_at_the_cap_with_bounded_memory(
    configure: Callable[..., None], hostile: Callable[[], Hostile], tmp_path: Path
) -> None:
    cap = 1 << 20
    configure(manifest_max_bytes=str(cap), manifest_wait_attempts="0")
    server = hostile()
    bomb = gzip_bomb()
    assert len(bomb) < 1_100_000
    path = f"/exports/ethereum/{DAY}/META.json"
    server.routes[path] = lambda h: send(h, 200, bomb, {"Content-Encoding": "gzip", "Content-Type": "application/json"})
    workdir = tmp_path / "run"
    workdir.mkdir()

    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLargeError) as raised:
            download_manifest.fn(sot_request(server.url(f"/exports/ethereum/{DAY}")), workdir)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert raised.value.kind == "body_too_large"
    assert not raised.value.transient
    assert f"{server.url(path)}: body larger than the cap of {cap} bytes" in str(raised.value)
    assert str(raised.value).startswith("sot-ethereum 2026-11-22: ")
    assert (workdir / "META.json").stat().st_size <= cap
    assert peak < 16 * cap  # 1 GiB decoded: never held, only chunks of it
    assert len(server.headers_seen(path)) == 1
    assert server.headers_seen(path)[0]["accept-encoding"] == "identity"  # we asked for the exact bytes


def test_oversized_api_body_fails_with_body_too_large(
    configure: Callable[..., None], hostile: Callable[[], Hostile]
) -> None:
    configure(http_max_body_bytes="1000")
    server = hostile()
    server.routes["/big"] = lambda h: send(h, 200, b"x" * 5000)
    server.routes["/big.gz"] = lambda h: send(h, 200, gzip.compress(b"y" * 50_000), {"Content-Encoding": "gzip"})
    server.routes["/fits"] = lambda h: send(h, 200, b"z" * 1000)
    document = json.dumps({"values": list(range(100))}).encode()
    server.routes["/fits.gz"] = lambda h: send(
        h, 200, gzip.compress(document), {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )

    for path in ("/big", "/big.gz"):
        with pytest.raises(BodyTooLargeError) as raised:
            get("api", server.url(path))
        assert raised.value.kind == "body_too_large"
        assert str(raised.value).startswith(f"api: {server.url(path)}: body larger than the cap of 1000 bytes")
        assert raised.value.seen > 1000
        assert len(server.headers_seen(path)) == 1  # not transient: not retried

    assert get("api", server.url("/fits")).content == b"z" * 1000
    assert get("api", server.url("/fits.gz")).json() == {"values": list(range(100))}


def test_a_file_longer_than_its_manifest_entry_stops_at_the_declared_bytes(
    home: Path, hostile: Callable[[], Hostile], tmp_path: Path
) -> None:
    server = hostile()
    path = f"/exports/ethereum/{DAY}/raw_alerts.parquet"
    server.routes[path] = lambda h: send(h, 200, b"p" * 3_000_000)
    resource = Resource(
        name="raw_alerts", path="raw_alerts.parquet", format="parquet", bytes=4000, sha256="0" * 64, rows=1
    )
    workdir = tmp_path / "run"

    with pytest.raises(IntegrityError) as raised:
        download_resource.fn(sot_request(server.url(f"/exports/ethereum/{DAY}")), resource, workdir)

    assert raised.value.kind == "integrity_failed"
    assert "expected 4000 bytes, received more" in str(raised.value)
    assert (workdir / "files" / "raw_alerts.parquet").read_bytes() == b"p" * 4000
    assert len(server.headers_seen(path)) == 1

    local = tmp_path / "local.bin"
    local.write_bytes(b"q" * 9000)
    with pytest.raises(IntegrityError, match="expected 4000 bytes, received more"):
        download_file("test", local.as_uri(), tmp_path / "copy.bin", expected_bytes=4000)
    assert (tmp_path / "copy.bin").stat().st_size == 4000


# --- credentials and redirects ----------------------------------------------------------------


def test_a_redirect_to_another_origin_never_carries_credentials(
    home: Path, hostile: Callable[[], Hostile], tmp_path: Path
) -> None:
    origin, other = hostile(), hostile()
    other.routes["/target"] = lambda h: send(h, 200, b'{"ok": true}')
    origin.routes["/away"] = redirect(other.url("/target"))
    origin.routes["/file"] = redirect(other.url("/target"))

    response = get("openaq", origin.url("/away"), headers={**SECRET_HEADERS, "X-Request-Id": "r1"})
    assert response.json() == {"ok": True}
    assert str(response.url) == other.url("/target")
    with httpx.Client(headers=SECRET_HEADERS) as client:  # credentials set on the client are dropped too
        download_file("test", origin.url("/file"), tmp_path / "f", client=client)

    received = other.headers_seen("/target")
    assert len(received) == 2
    for headers in received:
        assert not {name.lower() for name in SECRET_HEADERS} & set(headers)
    assert received[0]["x-request-id"] == "r1"  # headers that carry no credential still go
    assert origin.headers_seen("/away")[0]["x-api-key"] == "s3cret"


def test_a_same_origin_redirect_keeps_credentials(home: Path, hostile: Callable[[], Hostile]) -> None:
    server = hostile()
    server.routes["/old"] = redirect("/new")
    server.routes["/new"] = lambda h: send(h, 200, b"[]")

    assert get("openaq", server.url("/old"), headers=SECRET_HEADERS).json() == []

    [headers] = server.headers_seen("/new")
    assert headers["x-api-key"] == "s3cret"
    assert headers["authorization"] == "Bearer t0ken"


def test_redirects_are_bounded(home: Path, hostile: Callable[[], Hostile]) -> None:
    server = hostile()
    server.routes["/loop"] = redirect("/loop")

    with pytest.raises(FetchError, match="more than 5 redirects") as raised:
        get("test", server.url("/loop"))

    assert not raised.value.transient
    assert len(server.headers_seen("/loop")) == 6


# --- Retry-After ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("abc", None), ("Mon, 99 Foo 2025 99:99:99 GMT", None), ("-5", None), ("", None), ("7", 7.0)],
)
def test_retry_after_values_that_do_not_parse_are_absent(value: str, expected: float | None) -> None:
    assert _retry_after_s(httpx.Response(503, headers={"Retry-After": value})) == expected


def test_503_with_garbage_retry_after_is_retried_and_succeeds(home: Path, hostile: Callable[[], Hostile]) -> None:
    server = hostile()
    server.routes["/flaky"] = replies(
        lambda h: send(h, 503, headers={"Retry-After": "abc"}), lambda h: send(h, 200, b'{"n": 1}')
    )

    assert get("test", server.url("/flaky")).json() == {"n": 1}
    assert len(server.headers_seen("/flaky")) == 2


# --- META.json not published yet --------------------------------------------------------------


def test_unpublished_manifest_is_awaited_then_loaded(
    configure: Callable[..., None], exports: Path, server: ExportServer
) -> None:
    configure(manifest_wait_s="0.05", manifest_wait_attempts="3")
    export = write_export(exports, "ethereum", DAY, 60)
    meta = f"ethereum/{DAY}/META.json"
    server.fail(meta, 404, 404)

    outcome = ingest_sot("ethereum", DAY, base_url=server.base_url)

    assert outcome.status == "loaded"
    assert server.requests.count(f"/exports/{meta}") == 3
    for table in INGESTED:
        assert rows_for(table, "ethereum", DAY.isoformat()) == manifest_rows(export)[table]


def test_unpublished_manifest_fails_after_the_configured_waits(
    configure: Callable[..., None], exports: Path, server: ExportServer, tmp_path: Path
) -> None:
    configure(manifest_wait_attempts="2", manifest_wait_s="0.2")
    url = f"{server.base_url}/ethereum/{DAY}"

    started = time.monotonic()
    with pytest.raises(ManifestError) as raised:
        download_manifest.fn(sot_request(url), tmp_path)

    assert time.monotonic() - started >= 0.4
    assert str(raised.value) == (
        f"sot-ethereum 2026-11-22: META.json: expected at {url}/META.json, found HTTP 404 "
        "(the export is not published yet, or was published without its manifest)"
    )
    assert server.requests.count(f"/exports/ethereum/{DAY}/META.json") == 3
