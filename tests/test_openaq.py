"""OpenAQ v3 incremental ingestion against recorded responses served on loopback."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from prefect.blocks.system import Secret
from pytest_httpserver import HTTPServer

from flows.openaq import ingest_openaq
from headwater.ledger import open_ledger
from tests.helpers import ledger_runs, query
from tests.recorded import fixture_bytes, fixture_json

KEY = "sk-test-9f8e7d6c5b4a-NEVER-LOG-ME"
LOCATION = "openaq/openaq-r_v3_locations_1.json"  # location 1 has one sensor, id 1 (pm25)
MEASUREMENTS = "openaq/openaq-r_v3_sensors_3_measurements_2023-03-07.json"  # 48 real pm25 measurements


@pytest.fixture
def secret(home: Path) -> str:
    Secret(value=KEY).save("openaq-api-key", overwrite=True)
    return KEY


def _serve_location(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v3/locations/1", headers={"X-API-Key": KEY}).respond_with_data(
        fixture_bytes(LOCATION), content_type="application/json"
    )


def _serve_measurements(httpserver: HTTPServer, results: list[dict[str, Any]], since: str | None = None) -> None:
    body = dict(fixture_json(MEASUREMENTS), results=results)
    query_string = {"limit": "1000", "page": "1", **({"datetime_from": since} if since else {})}
    httpserver.expect_request(
        "/v3/sensors/1/measurements", query_string=query_string, headers={"X-API-Key": KEY}
    ).respond_with_json(body)


def _run(httpserver: HTTPServer) -> Any:
    return ingest_openaq([1], location_set="test", base_url=httpserver.url_for("/"))


def test_second_run_fetches_only_newer_measurements_without_duplicates(secret: str, httpserver: HTTPServer) -> None:
    records = fixture_json(MEASUREMENTS)["results"]
    # The API had the first 24 records at the first run, all 48 at the second (real records, served as subsets).
    _serve_location(httpserver)
    _serve_measurements(httpserver, records[:24])
    first = _run(httpserver)
    assert (first.status, first.rows_by_table) == ("loaded", {"measurements": 24, "measurements_quarantine": 0})
    cursor = records[23]["period"]["datetimeFrom"]["utc"]
    with open_ledger() as ledger:
        assert ledger.get_state("openaq-test", "cursor:sensor:1") == cursor

    httpserver.clear()
    _serve_location(httpserver)
    _serve_measurements(httpserver, records[20:], since=cursor)  # the server may repeat the boundary
    second = _run(httpserver)

    assert second.rows_by_table["measurements"] == 24
    assert query("SELECT count(), uniqExact(sensor_id, datetime_from) FROM openaq.measurements")[0] == (48, 48)
    assert query("SELECT count() FROM openaq.measurements FINAL")[0][0] == 48
    assert [(r["status"], r["rows_deduplicated"]) for r in ledger_runs("openaq-test")] == [("loaded", 0), ("loaded", 0)]
    with open_ledger() as ledger:
        assert ledger.get_state("openaq-test", "cursor:sensor:1") == records[-1]["period"]["datetimeFrom"]["utc"]
    value = query(
        "SELECT value FROM openaq.measurements WHERE datetime_from = {t:DateTime64(3, 'UTC')}",
        {"t": records[0]["period"]["datetimeFrom"]["utc"].replace("Z", "")},
    )
    assert value == [(records[0]["value"],)]


def test_out_of_range_values_are_quarantined_and_scored(secret: str, httpserver: HTTPServer) -> None:
    records = json.loads(json.dumps(fixture_json(MEASUREMENTS)["results"]))
    records[5]["value"] = 1500.0  # crafted: PM2.5 beyond 1000 µg/m³
    records[9]["value"] = -3.0  # crafted: negative concentration
    _serve_location(httpserver)
    _serve_measurements(httpserver, records)
    outcome = _run(httpserver)
    assert outcome.rows_by_table == {"measurements": 46, "measurements_quarantine": 2}
    assert query("SELECT countIf(value > 1000 OR value < 0) FROM openaq.measurements")[0][0] == 0
    reasons = [r[0] for r in query("SELECT reason FROM openaq.measurements_quarantine ORDER BY value")]
    assert reasons == ["pm25 -3.0 µg/m³ outside [0.0, 1000.0]", "pm25 1500.0 µg/m³ outside [0.0, 1000.0]"]
    [run] = ledger_runs("openaq-test")
    assert (run["rows_rejected"], run["quality_score"]) == (2, round(46 / 48, 4))


def test_api_key_is_sent_but_never_logged_or_stored(secret: str, httpserver: HTTPServer) -> None:
    _serve_location(httpserver)
    _serve_measurements(httpserver, fixture_json(MEASUREMENTS)["results"][:3])
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    watched = [logging.getLogger(name) for name in ("", "prefect", "headwater", "httpx", "httpcore")]
    levels = [logger.level for logger in watched]
    for logger in watched:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        outcome = _run(httpserver)
    finally:
        for logger, level in zip(watched, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
    assert outcome.status == "loaded"  # the recorded responses are only served with the key header
    assert all(request.headers.get("X-API-Key") == KEY for request, _ in httpserver.log)
    for run in ledger_runs("openaq-test"):
        assert KEY not in json.dumps(run, default=str)
    assert len(records) > 10  # the run's debug logs, httpx's request lines included
    assert not any(KEY in record.getMessage() for record in records)


def test_missing_key_block_fails_clearly_on_401(home: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v3/locations/1").respond_with_json({"detail": "Unauthorized"}, status=401)
    with pytest.raises(Exception, match="HTTP 401"):
        _run(httpserver)
    assert len(httpserver.log) == 1
