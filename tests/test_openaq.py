"""OpenAQ v3 incremental ingestion against recorded responses served on loopback."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prefect.blocks.system import Secret
from pytest_httpserver import HTTPServer

from blocks.ledger import open_ledger
from flows.openaq import ingest_openaq
from headwater.errors import HeadwaterError
from headwater.sources.openaq import cursor_key, fetch_measurements
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


def _serve_broken_location(httpserver: HTTPServer) -> None:
    """Location 2 (the recorded location 1, renumbered: sensor 2) whose measurements answer 500 every time."""
    body = fixture_json(LOCATION)
    body["results"][0]["id"] = 2
    body["results"][0]["sensors"][0]["id"] = 2
    httpserver.expect_request("/v3/locations/2", headers={"X-API-Key": KEY}).respond_with_json(body)
    httpserver.expect_request("/v3/sensors/2/measurements").respond_with_data("upstream broke", status=500)


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


BROKEN_CURSOR = "2023-03-01T00:00:00Z"  # sensor 2's cursor before the run (crafted)


def _seed_broken_cursor() -> None:
    with open_ledger() as ledger:
        ledger.set_state("openaq-test", cursor_key(2), BROKEN_CURSOR)


def test_a_failed_location_is_reported_and_keeps_its_cursor(
    secret: str, httpserver: HTTPServer, configure: Callable[..., None]
) -> None:
    """The fetch itself: the good location's rows and cursor, the failed one only in ``failures``."""
    configure(http_attempts="1")
    records = fixture_json(MEASUREMENTS)["results"]
    _serve_location(httpserver)
    _serve_measurements(httpserver, records[:24])
    _serve_broken_location(httpserver)

    fetched = fetch_measurements("openaq-test", httpserver.url_for("/"), (1, 2), {cursor_key(2): BROKEN_CURSOR}, KEY)

    assert fetched.frames["measurements"]["location_id"].unique().to_list() == [1]
    assert fetched.frames["measurements"].height == 24
    assert fetched.notes["state"] == {cursor_key(1): records[23]["period"]["datetimeFrom"]["utc"]}
    assert list(fetched.failures) == ["location 2"]
    assert "HTTP 500" in fetched.failures["location 2"]
    assert "/v3/sensors/2/measurements" in fetched.failures["location 2"]
    assert KEY not in json.dumps(fetched.failures)


def test_one_failing_location_does_not_fail_the_others(
    secret: str, httpserver: HTTPServer, configure: Callable[..., None]
) -> None:
    configure(http_attempts="1")
    records = fixture_json(MEASUREMENTS)["results"]
    _seed_broken_cursor()
    _serve_location(httpserver)
    _serve_measurements(httpserver, records[:24])
    _serve_broken_location(httpserver)

    outcome = ingest_openaq([1, 2], location_set="test", base_url=httpserver.url_for("/"))

    assert outcome.rows_by_table == {"measurements": 24, "measurements_quarantine": 0}
    assert query("SELECT location_id, count() FROM openaq.measurements GROUP BY location_id") == [(1, 24)]
    with open_ledger() as ledger:
        state = ledger.all_state("openaq-test")
    assert state[cursor_key(1)] == records[23]["period"]["datetimeFrom"]["utc"]  # advanced
    assert state[cursor_key(2)] == BROKEN_CURSOR  # kept: the next run asks again from here
    [run] = ledger_runs("openaq-test")
    assert "location 2" in json.dumps(run["notes"], default=str)
    assert "HTTP 500" in json.dumps(run["notes"], default=str)


def test_a_run_with_a_failed_location_is_recorded_partial(
    secret: str, httpserver: HTTPServer, configure: Callable[..., None]
) -> None:
    configure(http_attempts="1")
    _serve_location(httpserver)
    _serve_measurements(httpserver, fixture_json(MEASUREMENTS)["results"][:24])
    _serve_broken_location(httpserver)

    outcome = ingest_openaq([1, 2], location_set="test", base_url=httpserver.url_for("/"))

    assert outcome.status == "partial"
    [run] = ledger_runs("openaq-test")
    assert run["status"] == "partial"
    assert "location 2" in (run["error"] or "")


def test_every_location_failing_fails_the_run(
    secret: str, httpserver: HTTPServer, configure: Callable[..., None]
) -> None:
    configure(http_attempts="1")
    _seed_broken_cursor()
    httpserver.expect_request("/v3/locations/1").respond_with_data("upstream broke", status=500)
    _serve_broken_location(httpserver)

    with pytest.raises(HeadwaterError, match="HTTP 500") as raised:
        ingest_openaq([1, 2], location_set="test", base_url=httpserver.url_for("/"))

    assert "/v3/locations/1" in str(raised.value)  # the first location's error
    [run] = ledger_runs("openaq-test")
    assert run["status"] == "failed"
    with open_ledger() as ledger:
        assert ledger.all_state("openaq-test") == {cursor_key(2): BROKEN_CURSOR}
