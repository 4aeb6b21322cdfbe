"""World Bank indicators against recorded responses served on loopback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from flows.worldbank import ingest_worldbank
from headwater.errors import FetchError
from tests.helpers import ledger_runs, query
from tests.recorded import fixture_bytes, fixture_json

GDP = "NY.GDP.MKTP.CD"
PAGE_1_OF_3 = "worldbank/indicator_JPN-USA_NY.GDP.MKTP.CD_page1of3.json"
PATH = f"/v2/country/JPN;USA/indicator/{GDP}"


def serve_pages(httpserver: HTTPServer, per_page: int) -> list[dict[str, Any]]:
    """Serve the recorded records of page 1 of 3 as ``[meta, records]`` pages of ``per_page``.

    Only page 1 of that query was recorded (50 real records); they are served as the
    whole result, split into pages with the envelope's page fields set to match.
    """
    meta, records = fixture_json(PAGE_1_OF_3)
    pages = [records[i : i + per_page] for i in range(0, len(records), per_page)]
    for number, chunk in enumerate(pages, start=1):
        body = [dict(meta, page=number, pages=len(pages), per_page=per_page, total=len(records)), chunk]
        httpserver.expect_request(
            PATH, query_string={"format": "json", "per_page": str(per_page), "page": str(number)}
        ).respond_with_json(body)
    return list(records)


def _serve_recorded(httpserver: HTTPServer) -> None:
    serve_pages(httpserver, 1000)


def _run(httpserver: HTTPServer, **kwargs: Any) -> Any:
    return ingest_worldbank(
        "business", countries=["JPN", "USA"], indicators=[GDP], base_url=httpserver.url_for("/"), **kwargs
    )


def test_rows_and_types_match_the_recorded_response(home: Path, httpserver: HTTPServer) -> None:
    _serve_recorded(httpserver)
    outcome = _run(httpserver)
    meta, records = fixture_json(PAGE_1_OF_3)
    assert outcome.status == "loaded"
    assert meta["pages"] == 3  # the recording is page 1 of 3; only it exists
    assert outcome.rows_by_table == {"indicator_values": len(records)}
    rows = query(
        "SELECT country_iso3, year, value, indicator_name, vertical FROM worldbank.indicator_values "
        "WHERE country_id = 'JP' ORDER BY year DESC LIMIT 2"
    )
    assert rows[0] == ("JPN", 2020, None, "GDP (current US$)", "business")  # "value": null stays null
    assert rows[1][:2] == ("JPN", 2019)
    assert rows[1][2] == pytest.approx(5081769542379.77)
    types = dict(
        query("SELECT name, type FROM system.columns WHERE database = 'worldbank' AND table = 'indicator_values'")
    )
    assert (types["year"], types["value"], types["country_id"]) == ("Int64", "Nullable(Float64)", "String")


def test_pagination_follows_meta_pages(home: Path, httpserver: HTTPServer) -> None:
    records = serve_pages(httpserver, 20)
    outcome = _run(httpserver, per_page=20)
    assert outcome.rows_by_table == {"indicator_values": len(records)}
    assert [r.args["page"] for r, _ in httpserver.log] == ["1", "2", "3"]
    assert query("SELECT count(), countIf(value IS NULL) FROM worldbank.indicator_values")[0] == (
        len(records),
        sum(1 for r in records if r["value"] is None),
    )


def test_error_envelope_with_http_200_fails_clearly(home: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v2/country/JPN;USA/indicator/INVALID.INDICATOR.ID").respond_with_data(
        fixture_bytes("worldbank/error_invalid_indicator.json"), content_type="application/json;charset=utf-8"
    )
    with pytest.raises(FetchError) as raised:
        ingest_worldbank(
            "business", countries=["JPN", "USA"], indicators=["INVALID.INDICATOR.ID"], base_url=httpserver.url_for("/")
        )
    message = str(raised.value)
    assert message.startswith("worldbank-business: http://")
    assert "/v2/country/JPN;USA/indicator/INVALID.INDICATOR.ID" in message
    assert "World Bank API error: 120 Invalid value: The provided parameter value is not valid" in message
    [run] = ledger_runs("worldbank-business")
    assert (run["status"], run["error_kind"]) == ("failed", "fetch_failed")
    assert (
        query("SELECT count() FROM system.tables WHERE database = 'worldbank' AND name = 'indicator_values'")[0][0] == 0
    )


def test_records_null_means_no_data(home: Path, httpserver: HTTPServer) -> None:
    meta = {"page": 1, "pages": 1, "per_page": 1000, "total": 0}
    httpserver.expect_request(PATH).respond_with_data(json.dumps([meta, None]), content_type="application/json")
    outcome = _run(httpserver)
    assert outcome.rows_by_table == {"indicator_values": 0}
