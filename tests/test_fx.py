"""FX rates through the provider chain, against recorded responses served on loopback.

Recorded: the ECB daily XML of 2025-05-09 and Frankfurter ``/v1/latest?base=EUR`` of
2025-12-17 (different days, so the recorded pair shares no key). Crafted, and named so
where used: a Frankfurter body for 2025-05-09 built from the ECB recording's rates (a
matching pair), the same with USD raised by 10%, and open.er-api bodies (no recorded
open.er-api response exists; their shape follows the provider's documentation).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from flows.fx import ingest_fx
from headwater import events
from headwater.errors import FetchError
from headwater.providers import PROVIDERS_DISAGREE
from headwater.sources.fx import ECB_NAMESPACE, parse_erapi, rebase
from tests.helpers import ledger_runs, query
from tests.recorded import fixture_bytes, fixture_json

ECB_XML = "ecb/eurofxref-daily_2025-05-09.xml"
FRANKFURTER_JSON = "frankfurter/v1_latest_amount1_baseEUR_2025-12-17.json"
ECB_PATH = "/ecb/stats/eurofxref/eurofxref-daily.xml"
FRANKFURTER_PATH = "/frankfurter/v1/latest"
ERAPI_PATH = "/erapi/v6/latest/EUR"
INSTANCE = "fx-rates"


def ecb_rates() -> dict[str, float]:
    """The recorded ECB rates, read independently of the module under test."""
    root = ET.fromstring(fixture_bytes(ECB_XML))
    ns = {"e": ECB_NAMESPACE}
    return {c.attrib["currency"]: float(c.attrib["rate"]) for c in root.findall("./e:Cube/e:Cube/e:Cube", ns)}


def crafted_frankfurter(**overrides: float) -> dict[str, Any]:
    """CRAFTED: a Frankfurter body for the ECB recording's day with its rates (plus overrides)."""
    return {"amount": 1.0, "base": "EUR", "date": "2025-05-09", "rates": {**ecb_rates(), **overrides}}


def crafted_erapi(rates: dict[str, float], base: str = "EUR") -> dict[str, Any]:
    """CRAFTED from open.er-api's documented Open Access response (no recording exists)."""
    return {
        "result": "success",
        "provider": "https://www.exchangerate-api.com",
        "documentation": "https://www.exchangerate-api.com/docs/free",
        "terms_of_use": "https://www.exchangerate-api.com/terms",
        "time_last_update_unix": 1746835351,  # 2025-05-10 00:02:31 UTC
        "time_last_update_utc": "Sat, 10 May 2025 00:02:31 +0000",
        "time_next_update_unix": 1746922921,
        "time_next_update_utc": "Sun, 11 May 2025 00:22:01 +0000",
        "time_eol_unix": 0,
        "base_code": base,
        "rates": rates,
    }


def serve_ecb(httpserver: HTTPServer) -> None:
    httpserver.expect_request(ECB_PATH).respond_with_data(fixture_bytes(ECB_XML), content_type="text/xml")


def serve_frankfurter(httpserver: HTTPServer, body: Any | None = None) -> None:
    httpserver.expect_request(FRANKFURTER_PATH, query_string={"base": "EUR"}).respond_with_json(
        body if body is not None else fixture_json(FRANKFURTER_JSON)
    )


def run(httpserver: HTTPServer) -> Any:
    return ingest_fx(
        ecb_url=httpserver.url_for("/ecb"),
        frankfurter_url=httpserver.url_for("/frankfurter"),
        erapi_url=httpserver.url_for("/erapi"),
    )


def notes(run_row: Any) -> dict[str, Any]:
    return json.loads(run_row["notes"])["providers"]


def requests_to(httpserver: HTTPServer, path: str) -> list[int]:
    return [response.status_code for request, response in httpserver.log if request.path == path]


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(events, "emit", lambda event, instance, source, **payload: calls.append((event, payload)))
    return calls


def test_ecb_answers_rows_from_the_xml(home: Path, httpserver: HTTPServer, emitted: list[Any]) -> None:
    serve_ecb(httpserver)
    serve_frankfurter(httpserver)  # recorded, another day: compared, no common key, no false positive
    outcome = run(httpserver)
    assert outcome.status == "loaded"
    assert outcome.rows_by_table == {"rates": 30}
    rows = dict(
        query("SELECT quote, rate FROM markets.rates FINAL WHERE rate_date = '2025-05-09' AND quote IN ('USD', 'JPY')")
    )
    assert rows == {"USD": pytest.approx(1.1252), "JPY": pytest.approx(163.36)}
    assert query("SELECT DISTINCT provider, base FROM markets.rates") == [("ecb", "EUR")]
    types = dict(query("SELECT name, type FROM system.columns WHERE database = 'markets' AND table = 'rates'"))
    assert (types["rate_date"], types["rate"], types["provider"]) == ("Date", "Float64", "String")
    [row] = ledger_runs(INSTANCE)
    chain = notes(row)
    assert chain["winner"] == "ecb"
    assert chain["failures"] == []
    assert (chain["compared_with"], chain["compared_keys"], chain["disagreements"]) == (["frankfurter"], 0, [])
    assert emitted == []


def test_ecb_500_falls_back_to_frankfurter_and_notes_name_the_failure(home: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request(ECB_PATH).respond_with_data("down", status=500)
    serve_frankfurter(httpserver)
    httpserver.expect_request(ERAPI_PATH).respond_with_json(crafted_erapi({"EUR": 1, **ecb_rates()}))
    outcome = run(httpserver)
    assert outcome.status == "loaded"
    assert requests_to(httpserver, ECB_PATH) == [500] * 4  # retried (HEADWATER_HTTP_ATTEMPTS=4), then given up
    assert query("SELECT DISTINCT provider, toString(rate_date) FROM markets.rates") == [("frankfurter", "2025-12-17")]
    assert query("SELECT rate FROM markets.rates FINAL WHERE quote = 'USD'")[0][0] == pytest.approx(1.1722)
    [row] = ledger_runs(INSTANCE)
    chain = notes(row)
    assert chain["winner"] == "frankfurter"
    [failure] = chain["failures"]
    assert failure["provider"] == "ecb"
    assert "HTTP 500" in failure["error"]
    assert ECB_PATH in failure["error"]
    assert chain["compared_with"] == ["erapi"]  # the next provider answered; another day, no common key


def test_malformed_ecb_xml_falls_back_with_the_parse_error_in_notes(home: Path, httpserver: HTTPServer) -> None:
    truncated = fixture_bytes(ECB_XML)[:600]  # the recording cut mid-element
    httpserver.expect_request(ECB_PATH).respond_with_data(truncated, content_type="text/xml")
    serve_frankfurter(httpserver)
    outcome = run(httpserver)
    assert outcome.status == "loaded"
    assert requests_to(httpserver, ECB_PATH) == [200]  # a bad body is not retried
    assert {r[0] for r in query("SELECT provider FROM markets.rates")} == {"frankfurter"}
    [failure] = notes(ledger_runs(INSTANCE)[0])["failures"]
    assert failure["provider"] == "ecb"
    assert "malformed XML" in failure["error"]


def test_crafted_ten_percent_difference_is_a_disagreement(
    home: Path, httpserver: HTTPServer, emitted: list[Any]
) -> None:
    serve_ecb(httpserver)
    serve_frankfurter(httpserver, crafted_frankfurter(USD=round(1.1252 * 1.10, 4)))  # CRAFTED: USD +10%
    outcome = run(httpserver)
    assert outcome.status == "loaded"  # the winner is loaded; a disagreement is a signal
    chain = notes(ledger_runs(INSTANCE)[0])
    assert chain["compared_keys"] == 30
    assert chain["disagreements"] == [
        {
            "key": {"rate_date": "2025-05-09", "base": "EUR", "quote": "USD"},
            "provider_a": "ecb",
            "value_a": 1.1252,
            "provider_b": "frankfurter",
            "value_b": 1.2377,
            "relative_difference": pytest.approx(0.0909, abs=1e-4),
        }
    ]
    [(event, payload)] = emitted
    assert event == PROVIDERS_DISAGREE
    assert payload["winner"] == "ecb"


def test_crafted_matching_pair_has_no_disagreement(home: Path, httpserver: HTTPServer, emitted: list[Any]) -> None:
    serve_ecb(httpserver)
    serve_frankfurter(httpserver, crafted_frankfurter(JPY=163.36 * 1.01))  # CRAFTED: same day, JPY 1% off
    run(httpserver)
    chain = notes(ledger_runs(INSTANCE)[0])
    assert (chain["compared_keys"], chain["disagreements"]) == (30, [])
    assert emitted == []


def test_404_is_not_retried_and_the_chain_moves_on(home: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request(ECB_PATH).respond_with_data("not here", status=404)
    serve_frankfurter(httpserver)
    outcome = run(httpserver)
    assert outcome.status == "loaded"
    assert requests_to(httpserver, ECB_PATH) == [404]
    [failure] = notes(ledger_runs(INSTANCE)[0])["failures"]
    assert failure["provider"] == "ecb"
    assert "HTTP 404" in failure["error"]


def test_erapi_is_the_last_resort(home: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request(ECB_PATH).respond_with_data("not here", status=404)
    httpserver.expect_request(FRANKFURTER_PATH).respond_with_data("gone", status=410)
    rates = {"EUR": 1, **ecb_rates()}
    httpserver.expect_request(ERAPI_PATH).respond_with_json(crafted_erapi(rates))  # CRAFTED (documented shape)
    outcome = run(httpserver)
    assert outcome.rows_by_table == {"rates": 30}  # the EUR→EUR row is dropped
    assert query("SELECT DISTINCT provider, toString(rate_date) FROM markets.rates") == [("erapi", "2025-05-10")]
    chain = notes(ledger_runs(INSTANCE)[0])
    assert [f["provider"] for f in chain["failures"]] == ["ecb", "frankfurter"]
    assert "HTTP 410" in chain["failures"][1]["error"]


def test_every_provider_failing_fails_the_run_naming_each(home: Path, httpserver: HTTPServer) -> None:
    for path in (ECB_PATH, FRANKFURTER_PATH, ERAPI_PATH):
        httpserver.expect_request(path).respond_with_data("not here", status=404)
    with pytest.raises(FetchError, match=r"every provider failed: ecb: .*frankfurter: .*erapi: "):
        run(httpserver)
    [row] = ledger_runs(INSTANCE)
    assert (row["status"], row["error_kind"]) == ("failed", "fetch_failed")


def test_erapi_error_envelope_and_rebasing() -> None:
    with pytest.raises(FetchError, match="result='error': unsupported-code"):
        parse_erapi("fx-eur", "u", {"result": "error", "error-type": "unsupported-code"})
    frame = parse_erapi("fx-eur", "u", crafted_erapi({"USD": 1, "EUR": 0.8, "JPY": 144.0}, base="USD"))
    assert dict(zip(frame["quote"], frame["rate"], strict=True)) == {
        "JPY": pytest.approx(180.0),
        "USD": pytest.approx(1.25),
    }
    with pytest.raises(FetchError, match="quote no EUR"):
        rebase("fx-eur", "u", {"USD": 1.0}, "GBP", "EUR")
