"""Open-Meteo forecasts against the recorded response served on loopback.

The one recorded response is for Greenwich (51.4769, -0.0005), so the tests configure
regions at those coordinates; each request is matched on its path and whole query, so a
test also proves which URL was sent. The recording asked for more than the flow does
(more current variables, ``minutely_15`` and ``daily``); the extra blocks are ignored.
No error response was recorded: the 400 body below and the out-of-range copies are
crafted, and say so.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from flows.open_meteo import ingest_open_meteo
from headwater.errors import ConfigurationError, FetchError, SchemaViolation
from headwater.outcome import BatchOutcome
from headwater.sources.open_meteo import DEFAULT_REGIONS, Region, forecast_url, parse_forecast
from tests.helpers import ledger_runs, query
from tests.recorded import fixture_bytes, fixture_json

RECORDED = "open_meteo/forecast_current_minutely15_hourly_daily_greenwich_2026-09-17.json"
PATH = "/v1/forecast"
GREENWICH = {"name": "Greenwich", "latitude": 51.4769, "longitude": -0.0005}
# The query the flow must send for Greenwich (written out, not rebuilt with forecast_url).
QUERY = {
    "latitude": "51.4769",
    "longitude": "-0.0005",
    "current": "temperature_2m,relative_humidity_2m,apparent_temperature,dew_point_2m,precipitation,rain,showers,"
    "weather_code,cloud_cover,pressure_msl,surface_pressure,wind_speed_10m,wind_direction_10m,wind_gusts_10m,"
    "shortwave_radiation",
    "hourly": "temperature_2m,relative_humidity_2m,precipitation_probability,precipitation",
    "timezone": "UTC",
    "forecast_hours": "48",
}
INSTANCE = "open-meteo-greenwich"


def serve(httpserver: HTTPServer, body: bytes | None = None) -> None:
    """Answer exactly Greenwich's forecast query with the recorded body (or ``body``)."""
    httpserver.expect_request(PATH, query_string=QUERY).respond_with_data(
        fixture_bytes(RECORDED) if body is None else body, content_type="application/json; charset=utf-8"
    )


def run(httpserver: HTTPServer, regions: list[dict[str, Any]] | None = None) -> Any:
    return ingest_open_meteo("greenwich", regions or [GREENWICH], base_url=httpserver.url_for("/"))


def weather_tables() -> set[str]:
    return {r[0] for r in query("SELECT name FROM system.tables WHERE database = 'weather'")}


def test_url_sends_literal_comma_lists_and_plain_coordinates() -> None:
    region = Region("Greenwich", 51.4769, -0.0005)
    url = forecast_url("https://api.open-meteo.com/", region, 48)
    assert url.startswith("https://api.open-meteo.com/v1/forecast?latitude=51.4769&longitude=-0.0005&current=")
    assert "&hourly=temperature_2m,relative_humidity_2m,precipitation_probability,precipitation&" in url
    assert url.endswith("&timezone=UTC&forecast_hours=48")
    assert "latitude=0.00001&" in forecast_url("http://x", Region("tiny", 0.00001, 0), 1)  # never 1e-05


def test_default_regions_are_peruvian_coffee_regions() -> None:
    names = [r.name for r in DEFAULT_REGIONS]
    assert len(names) == len(set(names)) >= 6
    assert any("Cajamarca" in n for n in names)
    assert any("Chanchamayo" in n for n in names)
    for region in DEFAULT_REGIONS:  # Peru's bounding box
        assert -18.4 < region.latitude < 0, region
        assert -81.4 < region.longitude < -68.6, region


def test_rows_and_types_match_the_recorded_response(home: Path, httpserver: HTTPServer) -> None:
    serve(httpserver)
    # two regions at the recorded coordinates: one request each, the same answer each
    outcome = run(httpserver, [GREENWICH, dict(GREENWICH, name="Royal Observatory")])
    recorded = fixture_json(RECORDED)
    hours = len(recorded["hourly"]["time"])
    assert outcome.status == "loaded"
    assert (outcome.instance, outcome.partition_key) == (INSTANCE, "greenwich")
    assert (
        outcome.rows_by_table
        == {"weather_current": 2, "weather_hourly": 2 * hours}
        == {
            "weather_current": 2,
            "weather_hourly": 96,
        }
    )
    assert len(httpserver.log) == 2

    current = recorded["current"]
    row = query(
        "SELECT region_set, latitude, longitude, grid_latitude, grid_longitude, elevation, toString(observed_at), "
        "interval_s, temperature_2m, relative_humidity_2m, weather_code, precipitation, wind_direction_10m, "
        "shortwave_radiation FROM weather.weather_current WHERE region = 'Greenwich'"
    )
    assert row == [
        (
            "greenwich",
            51.4769,  # as configured
            -0.0005,
            recorded["latitude"],  # the grid cell the API used
            recorded["longitude"],
            recorded["elevation"],
            "2026-09-17 18:00:00.000",  # current.time, UTC
            current["interval"],
            current["temperature_2m"],
            current["relative_humidity_2m"],
            current["weather_code"],
            current["precipitation"],
            current["wind_direction_10m"],
            current["shortwave_radiation"],
        )
    ]
    assert (current["time"], current["temperature_2m"], recorded["utc_offset_seconds"]) == ("2026-09-17T18:00", 18.6, 0)
    assert query("SELECT region FROM weather.weather_current ORDER BY region") == [
        ("Greenwich",),
        ("Royal Observatory",),
    ]

    hourly = recorded["hourly"]
    rows = query(
        "SELECT formatDateTime(time, '%Y-%m-%dT%H:%i'), temperature_2m, relative_humidity_2m, "
        "precipitation_probability, precipitation FROM weather.weather_hourly WHERE region = 'Greenwich' ORDER BY time"
    )
    assert rows == list(
        zip(
            hourly["time"],
            hourly["temperature_2m"],
            hourly["relative_humidity_2m"],
            hourly["precipitation_probability"],
            hourly["precipitation"],
            strict=True,
        )
    )
    assert (rows[0][0], rows[-1][0]) == ("2026-09-17T18:00", "2026-09-19T17:00")

    types = dict(
        query("SELECT name, type FROM system.columns WHERE database = 'weather' AND table = 'weather_current'")
    )
    assert (types["region_set"], types["region"], types["latitude"], types["observed_at"]) == (
        "String",
        "String",
        "Float64",
        "DateTime64(3, 'UTC')",
    )
    assert (types["temperature_2m"], types["weather_code"], types["interval_s"]) == (
        "Nullable(Float64)",
        "Nullable(Int64)",
        "Int64",
    )
    types = dict(query("SELECT name, type FROM system.columns WHERE database = 'weather' AND table = 'weather_hourly'"))
    assert types == {
        "region_set": "String",
        "region": "String",
        "time": "DateTime64(3, 'UTC')",
        "temperature_2m": "Nullable(Float64)",
        "relative_humidity_2m": "Nullable(Float64)",
        "precipitation_probability": "Nullable(Float64)",
        "precipitation": "Nullable(Float64)",
        "_batch_id": "String",
        "_loaded_at": "DateTime64(3, 'UTC')",
    }
    partition = query("SELECT partition_key FROM system.tables WHERE database = 'weather' AND name = 'weather_hourly'")
    assert partition == [("(region_set)",)]


def test_400_error_envelope_fails_with_the_reason(home: Path, httpserver: HTTPServer) -> None:
    # Crafted: no Open-Meteo error response was recorded. This is the documented envelope
    # ({"error": true, "reason": ...}) with the reason the API gives for a bad latitude.
    reason = "Latitude must be in range of -90 to 90°. Given: 91.0."
    body = json.dumps({"error": True, "reason": reason}, ensure_ascii=False).encode()
    httpserver.expect_request(PATH).respond_with_data(body, status=400, content_type="application/json")
    with pytest.raises(FetchError) as raised:
        run(httpserver)
    message = str(raised.value)
    assert message.startswith(f"{INSTANCE}: {httpserver.url_for(PATH)}?latitude=51.4769&longitude=-0.0005&current=")
    assert "HTTP 400" in message
    assert f'"reason": "{reason}"' in message
    assert raised.value.status == 400
    assert len(httpserver.log) == 1  # a 4xx is not retried
    [ledger] = ledger_runs(INSTANCE)
    assert (ledger["status"], ledger["error_kind"]) == ("failed", "fetch_failed")
    assert weather_tables() == set()


def test_error_envelope_with_http_200_and_bad_bodies_fail_clearly() -> None:
    region = Region("Greenwich", 51.4769, -0.0005)
    # crafted bodies: the error envelope arriving with HTTP 200, and damaged copies of the recording
    with pytest.raises(FetchError, match="Open-Meteo API error: Parameter 'hourly' is invalid"):
        parse_forecast("s", "http://x", "g", region, {"error": True, "reason": "Parameter 'hourly' is invalid"})
    with pytest.raises(FetchError, match="expected one location's forecast object"):
        parse_forecast("s", "http://x", "g", region, [fixture_json(RECORDED)])
    fahrenheit = fixture_json(RECORDED)
    fahrenheit["hourly_units"]["temperature_2m"] = "°F"
    with pytest.raises(
        FetchError, match=re.escape("expected hourly units {'temperature_2m': '°C'}, found {'temperature_2m': '°F'}")
    ):
        parse_forecast("s", "http://x", "g", region, fahrenheit)
    missing = fixture_json(RECORDED)
    del missing["current"]["rain"]
    with pytest.raises(FetchError, match=r"expected current variables \['rain'\]"):
        parse_forecast("s", "http://x", "g", region, missing)
    ragged = fixture_json(RECORDED)
    ragged["hourly"]["precipitation"].pop()
    with pytest.raises(FetchError, match=r"expected 48 hourly values per variable .* found {'precipitation': 47}"):
        parse_forecast("s", "http://x", "g", region, ragged)


def test_local_times_are_shifted_to_utc() -> None:
    # crafted: the recording was made with timezone=UTC; an answer in Lima time (UTC-5)
    lima = fixture_json(RECORDED)
    lima["utc_offset_seconds"] = -5 * 3600
    row, rows = parse_forecast("s", "http://x", "g", Region("Greenwich", 51.4769, -0.0005), lima)
    assert row["observed_at"].isoformat() == "2026-09-17T23:00:00+00:00"
    assert rows[0]["time"].isoformat() == "2026-09-17T23:00:00+00:00"


def test_out_of_range_values_fail_validation(home: Path, httpserver: HTTPServer) -> None:
    # crafted: the recording with an impossible relative humidity (140 %) in current
    body = copy.deepcopy(fixture_json(RECORDED))
    body["current"]["relative_humidity_2m"] = 140
    serve(httpserver, json.dumps(body).encode())
    with pytest.raises(SchemaViolation) as raised:
        run(httpserver)
    message = str(raised.value)
    assert message == (
        f"{INSTANCE}: weather_current.parquet: 1 failing check(s): "
        "relative_humidity_2m: less_than_or_equal_to(100) failed for 1 row(s), e.g. '140.0'"
    )
    [ledger] = ledger_runs(INSTANCE)
    assert (ledger["status"], ledger["error_kind"], ledger["error"]) == ("failed", "schema_violation", message)
    assert weather_tables() == set()


def test_bad_parameters_fail_before_any_request(home: Path, httpserver: HTTPServer) -> None:
    root = httpserver.url_for("/")
    with pytest.raises(ConfigurationError, match="region set name"):
        ingest_open_meteo("Peru Coffee", base_url=root)
    with pytest.raises(ConfigurationError, match="unique region names, found Greenwich"):
        ingest_open_meteo("greenwich", [GREENWICH, GREENWICH], base_url=root)
    with pytest.raises(ConfigurationError, match=r"latitude in -90\.\.90"):
        ingest_open_meteo("greenwich", [dict(GREENWICH, latitude=91)], base_url=root)
    with pytest.raises(ConfigurationError, match="name, latitude, longitude"):
        ingest_open_meteo("greenwich", [{"name": "Greenwich", "lat": 51.4769, "lon": 0}], base_url=root)
    with pytest.raises(ConfigurationError, match="at least one region"):
        ingest_open_meteo("greenwich", [], base_url=root)
    with pytest.raises(ConfigurationError, match=r"forecast_hours in 1\.\.384"):
        ingest_open_meteo("greenwich", [GREENWICH], base_url=root, forecast_hours=0)
    assert len(httpserver.log) == 0


def test_base_url_from_settings(configure: Any, httpserver: HTTPServer) -> None:
    configure(
        base_urls=json.dumps({"open_meteo": httpserver.url_for("/")}),
        databases=json.dumps({"open_meteo": "weather_test"}),
    )
    serve(httpserver)
    outcome = ingest_open_meteo("greenwich", [GREENWICH])
    assert isinstance(outcome, BatchOutcome)
    assert outcome.status == "loaded"
    assert query("SELECT count() FROM weather_test.weather_hourly")[0][0] == 48
