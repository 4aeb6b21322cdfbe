"""The data-health HTTP API, served by a real uvicorn server on 127.0.0.1, read with httpx.

The report behind it is the real one: SOT exports loaded through the pipeline into the
test's warehouse and ledger; the token lives in a real Prefect Secret block.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prefect.blocks.system import Secret

from devtools.export_server import ExportServer
from devtools.generate import write_export
from flows.health import health_app
from flows.health import main as health_main
from flows.sot import ingest_sot
from headwater.errors import ConfigurationError
from headwater.health import STATES
from headwater.health_api import health_server

RECENT = datetime.now(UTC).date() - timedelta(days=1)
TOKEN_BLOCK = "health-api-test-token"
TOKEN = "s3cret-health-token"  # a test value, kept in a test Secret block


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(token_block: str | None = None) -> Iterator[str]:
    """The health API on a free port of 127.0.0.1 in a uvicorn thread; yields its base URL."""
    port = free_port()
    server = health_server(health_app(token_block), "127.0.0.1", port)
    thread = threading.Thread(target=server.run, name="health-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped before it started"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def loaded(home: Path, exports: Path, server: ExportServer) -> None:
    """sot-ethereum loaded yesterday's export just now; sot-bitcoin failed once."""
    write_export(exports, "ethereum", RECENT, 30)
    assert ingest_sot("ethereum", RECENT, base_url=server.base_url).status == "loaded"
    with pytest.raises(Exception, match=r"META\.json"):
        ingest_sot("bitcoin", RECENT, base_url=server.base_url)


def test_routes_answer_the_report_as_json(loaded: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert health_main(["--json"]) == 0
    command = json.loads(capsys.readouterr().out)
    with serving() as base, httpx.Client(base_url=base, timeout=30) as client:
        status = client.get("/health/status")
        sources = client.get("/health/sources")
        one = client.get("/health/sources/sot-ethereum")
        unknown = client.get("/health/sources/no-such-instance")
        write = client.post("/health/sources/sot-ethereum")
        schema = client.get("/openapi.json")

    assert status.status_code == 200
    assert status.headers["content-type"] == "application/json"
    assert status.json()["overall"] == command["overall"] == "never"  # sot-bitcoin never succeeded
    assert set(status.json()) == {"generated_at", "overall", "counts"}
    assert status.json()["counts"]["fresh"] == 1

    assert sources.status_code == 200
    body = sources.json()
    assert set(body) == set(command)  # the same model as --json
    assert [s["name"] for s in body["sources"]] == [s["name"] for s in command["sources"]]
    by_name = {s["name"]: s for s in body["sources"]}
    assert by_name["sot-bitcoin"]["state"] == "never"
    assert all(s["state"] in STATES for s in body["sources"])

    assert one.status_code == 200
    eth = one.json()
    assert set(eth) == set(command["sources"][0])
    assert (eth["name"], eth["state"], eth["deployed"], eth["data_time"]) == (
        "sot-ethereum",
        "fresh",
        True,
        f"{RECENT}T00:00:00Z",
    )
    assert eth["last_rows"] > 0

    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "no source instance named 'no-such-instance'"}
    assert write.status_code == 405  # read-only

    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert set(paths) == {"/health/status", "/health/sources", "/health/sources/{name}"}
    assert all(set(methods) == {"get"} for methods in paths.values())
    assert "SourceHealth" in schema.json()["components"]["schemas"]


def test_a_configured_token_is_required(loaded: None, configure: Callable[..., None]) -> None:
    Secret(value=TOKEN).save(TOKEN_BLOCK, overwrite=True)
    configure(health_token_block=TOKEN_BLOCK)
    with serving() as base, httpx.Client(base_url=base, timeout=30) as client:
        missing = client.get("/health/status")
        wrong = client.get("/health/sources", headers={"Authorization": "Bearer not-the-token"})
        basic = client.get("/health/sources/sot-ethereum", auth=("user", TOKEN))
        right = client.get("/health/sources/sot-ethereum", headers={"Authorization": f"Bearer {TOKEN}"})
        unknown = client.get("/health/sources/nope", headers={"Authorization": f"Bearer {TOKEN}"})
        unknown_unauthenticated = client.get("/health/sources/nope")

    for refused in (missing, wrong, basic, unknown_unauthenticated):
        assert refused.status_code == 401
        assert refused.json() == {"detail": "expected a valid bearer token"}
        assert refused.headers["www-authenticate"] == "Bearer"
        assert TOKEN not in refused.text
    assert right.status_code == 200
    assert right.json()["state"] == "fresh"
    assert unknown.status_code == 404


def test_a_named_token_block_that_does_not_exist_refuses_to_serve(home: Path) -> None:
    with pytest.raises(ConfigurationError, match="expected a Secret block named 'no-such-token-block'"):
        health_app("no-such-token-block")
    assert health_main(["serve", "--port", str(free_port()), "--token-block", "no-such-token-block"]) == 2
