"""Coffee prices through the provider chain, against recorded responses served on loopback.

No KC=F (coffee) Yahoo recording exists: the recorded GC=F (gold) chart body stands in
for it, for its shape only (its 1524.5 close is read as US cents/lb, i.e. 15.245 USD/lb).
No kc.f Stooq recording exists either: the recorded ^SPX CSV is served as is where a
wrong-unit answer is wanted, and CRAFTED CSVs in its exact layout (CRLF,
``Date,Open,High,Low,Close,Volume``) are used where coffee-like values are needed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from flows.coffee import ingest_coffee
from headwater import events
from headwater.providers import PROVIDERS_DISAGREE
from headwater.sources.coffee import ICO_FALLBACK, parse_stooq, parse_yahoo
from tests.helpers import ledger_runs, query
from tests.recorded import fixture_bytes, fixture_json

YAHOO_GC = "stooq_yahoo/v8_finance_chart_GC_F_period1-1577836800_period2-1578009600_body.json"
STOOQ_SPX = "stooq_yahoo/stooq_q_d_l_spx_daily_head20_tail30.csv"
YAHOO_PATH = "/yahoo/v8/finance/chart/KC=F"
YAHOO_QUERY = {"range": "5d", "interval": "1d"}
STOOQ_PATH = "/stooq/q/d/l/"
STOOQ_QUERY = {"s": "kc.f", "i": "d"}
INSTANCE = "coffee-prices"


def crafted_stooq(rows: list[tuple[str, float]]) -> bytes:
    """CRAFTED: a Stooq daily CSV in the recorded layout (CRLF) with the given closes (US cents/lb)."""
    lines = ["Date,Open,High,Low,Close,Volume"] + [f"{d},{c},{c},{c},{c},100" for d, c in rows]
    return ("\r\n".join(lines) + "\r\n").encode()


def serve_yahoo(httpserver: HTTPServer) -> None:
    httpserver.expect_request(YAHOO_PATH, query_string=YAHOO_QUERY).respond_with_data(
        fixture_bytes(YAHOO_GC), content_type="application/json"
    )


def serve_stooq(httpserver: HTTPServer, body: bytes) -> None:
    httpserver.expect_request(STOOQ_PATH, query_string=STOOQ_QUERY).respond_with_data(body, content_type="text/csv")


def run(httpserver: HTTPServer) -> Any:
    return ingest_coffee(yahoo_url=httpserver.url_for("/yahoo"), stooq_url=httpserver.url_for("/stooq"))


def run_notes() -> dict[str, Any]:
    return dict(json.loads(ledger_runs(INSTANCE)[-1]["notes"]))


def requests_to(httpserver: HTTPServer, path: str) -> list[int]:
    return [response.status_code for request, response in httpserver.log if request.path == path]


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(events, "emit", lambda event, instance, source, **payload: calls.append((event, payload)))
    return calls


def test_yahoo_answers_in_usd_per_lb(home: Path, httpserver: HTTPServer, emitted: list[Any]) -> None:
    serve_yahoo(httpserver)
    serve_stooq(httpserver, crafted_stooq([("2020-01-02", 1524.5)]))  # CRAFTED: agrees with Yahoo
    outcome = run(httpserver)
    assert outcome.status == "loaded"
    rows = query(
        "SELECT toString(price_date), symbol, price_usd_per_lb, provider, is_fallback, fallback_as_of "
        "FROM markets.coffee_prices FINAL"
    )
    assert rows == [("2020-01-02", "KC", pytest.approx(15.245), "yahoo", False, None)]
    types = dict(query("SELECT name, type FROM system.columns WHERE database = 'markets' AND table = 'coffee_prices'"))
    assert (types["is_fallback"], types["fallback_as_of"]) == ("Bool", "Nullable(Date)")
    chain = run_notes()["providers"]
    assert (chain["winner"], chain["failures"], chain["compared_with"], chain["compared_keys"]) == (
        "yahoo",
        [],
        ["stooq"],
        1,
    )
    assert chain["disagreements"] == []
    assert emitted == []


def test_both_live_providers_failing_give_the_dated_ico_fallback(home: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request(YAHOO_PATH).respond_with_data("down", status=500)
    httpserver.expect_request(STOOQ_PATH).respond_with_data("not here", status=404)
    outcome = run(httpserver)
    assert outcome.status == "loaded"
    assert requests_to(httpserver, YAHOO_PATH) == [500] * 4
    assert requests_to(httpserver, STOOQ_PATH) == [404]
    [row] = query(
        "SELECT price_date, symbol, price_usd_per_lb, provider, is_fallback, fallback_as_of FROM markets.coffee_prices"
    )
    assert row[0] == datetime.now(UTC).date()
    assert row[1:] == ("KC", pytest.approx(1.0723), "ico_static", True, ICO_FALLBACK.as_of)
    notes = run_notes()
    chain = notes["providers"]
    assert chain["winner"] == "ico_static"
    assert [f["provider"] for f in chain["failures"]] == ["yahoo", "stooq"]
    assert "HTTP 500" in chain["failures"][0]["error"]
    assert "HTTP 404" in chain["failures"][1]["error"]
    assert notes["fallback"]["as_of"] == "2019-11-30"
    assert "ICO" in notes["fallback"]["reference"]


def test_a_wrong_unit_answer_fails_the_sanity_check(home: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request(YAHOO_PATH).respond_with_data("not here", status=404)
    serve_stooq(httpserver, fixture_bytes(STOOQ_SPX))  # recorded ^SPX: ~4500 "cents" would be 45 USD/lb
    run(httpserver)
    assert query("SELECT provider, is_fallback FROM markets.coffee_prices") == [("ico_static", True)]
    [_, stooq] = run_notes()["providers"]["failures"]
    assert stooq["provider"] == "stooq"
    assert "outside 0.2..20.0 USD/lb" in stooq["error"]


def test_stooq_answers_when_yahoo_fails(home: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request(YAHOO_PATH).respond_with_data(
        json.dumps({"chart": {"result": None, "error": {"code": "Not Found", "description": "No data found"}}}),
        content_type="application/json",
    )  # CRAFTED: Yahoo's error envelope
    days = [(f"2025-05-{d:02d}", 380.0 + d) for d in range(1, 10)]
    serve_stooq(httpserver, crafted_stooq(days))
    outcome = run(httpserver)
    assert outcome.rows_by_table == {"coffee_prices": 5}  # the last 5 sessions, like Yahoo's range=5d
    rows = query("SELECT toString(price_date), price_usd_per_lb, provider FROM markets.coffee_prices ORDER BY 1")
    assert rows[0] == ("2025-05-05", pytest.approx(3.85), "stooq")
    [failure] = run_notes()["providers"]["failures"]
    assert failure["provider"] == "yahoo"
    assert "No data found" in failure["error"]


def test_crafted_difference_between_yahoo_and_stooq_is_a_disagreement(
    home: Path, httpserver: HTTPServer, emitted: list[Any]
) -> None:
    serve_yahoo(httpserver)
    serve_stooq(httpserver, crafted_stooq([("2020-01-01", 1500.0), ("2020-01-02", 1700.0)]))  # CRAFTED: +11.5%
    run(httpserver)
    [d] = run_notes()["providers"]["disagreements"]
    assert d["key"] == {"price_date": "2020-01-02", "symbol": "KC"}
    assert (d["provider_a"], d["value_a"], d["provider_b"], d["value_b"]) == ("yahoo", 15.245, "stooq", 17.0)
    [(event, _)] = emitted
    assert event == PROVIDERS_DISAGREE


def test_parsers_on_the_recorded_shapes() -> None:
    frame = parse_yahoo("coffee-kc", "u", fixture_json(YAHOO_GC))
    assert frame.to_dicts() == [
        {
            "price_date": datetime(2020, 1, 2).date(),
            "symbol": "KC",
            "price_usd_per_lb": pytest.approx(15.245),
            "is_fallback": False,
            "fallback_as_of": None,
        }
    ]
    spx = parse_stooq("coffee-kc", "u", fixture_bytes(STOOQ_SPX).decode(), sessions=0)
    assert spx.height == 50  # 20 + 30 recorded rows; CRLF and the missing Volume column read fine
    assert spx["price_date"].min() == datetime(1789, 5, 1).date()
