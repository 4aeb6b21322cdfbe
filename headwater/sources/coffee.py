"""Arabica coffee futures prices (ICE "Coffee C", ``KC``) from a chain of providers.

Providers, in order (``headwater.providers``):

1. **Yahoo Finance chart API v8** ``GET {yahoo}/v8/finance/chart/KC=F?range=5d&interval=1d``::

       {"chart": {"result": [{"meta": {"symbol", "currency", "gmtoffset", …},
                               "timestamp": [1577941200, …],
                               "indicators": {"quote": [{"close": [1524.5, …], …}]}}],
                  "error": null}}

   A timestamp is the session's start; shifted by ``meta.gmtoffset`` it gives the
   exchange's trading date. A ``close`` may be null (a session not yet settled) and is
   skipped. No KC=F recording exists: the parser was built on a recorded GC=F (gold)
   answer, which has the same shape.
2. **Stooq** daily CSV ``GET {stooq}/q/d/l/?s=kc.f&i=d`` (CRLF):
   ``Date,Open,High,Low,Close[,Volume]``; the last ``SESSIONS`` rows are kept, matching
   Yahoo's ``range=5d``. Stooq answers HTTP 200 with the text ``No data`` for an
   unknown symbol, which is an error here.
3. **ICO composite indicator price**: a *static, dated* fallback (``ICO_FALLBACK``), not a
   live provider. When both live providers fail, one row for the run's UTC date carries
   that value, marked ``is_fallback=True`` with ``fallback_as_of`` the date the constant
   describes. It is never used to judge a live provider (``comparable=False``).

Units: ICE Coffee C (and so Yahoo's KC=F and Stooq's kc.f) is quoted in **US cents per
pound**; both live providers' prices are divided by 100 into ``price_usd_per_lb``, and a
price outside ``PLAUSIBLE_USD_PER_LB`` fails the sanity check (a unit slip is caught,
not loaded). The ICO indicator is also published in US cents/lb and converted likewise.

Table ``coffee_prices``: ``price_date, symbol, price_usd_per_lb, provider, is_fallback,
fallback_as_of``, key ``(price_date, symbol)``, partition ``symbol``, ``merge`` mode
(monthly ClickHouse partitions): daily prices accumulate into a history, and a fallback
row is superseded by a live price for the same date on a later run (newest load wins).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandera.polars as pa
import polars as pl
from pydantic import Field, field_validator

from headwater.api_batch import FetchResult
from headwater.bodies import json_body
from headwater.errors import FetchError
from headwater.http import get, make_client
from headwater.providers import Provider, Tolerance, run_chain, tolerance_of
from headwater.spec import ApiCall, ApiSource, DataClock, SourceParams, UrlParam
from headwater.tables import MERGE, TableSpec

DEFAULT_SYMBOL = "KC"
YAHOO_BASE_URL = "https://query2.finance.yahoo.com"
STOOQ_BASE_URL = "https://stooq.com"
YAHOO_TICKERS = {"KC": "KC=F"}
STOOQ_TICKERS = {"KC": "kc.f"}
CENTS_PER_DOLLAR = 100.0
SESSIONS = 5
PLAUSIBLE_USD_PER_LB = (0.2, 20.0)


@dataclass(frozen=True)
class StaticPrice:
    """A documented price constant: value in US cents/lb, the date it describes, and where it is from."""

    us_cents_per_lb: float
    as_of: date
    reference: str


# The ICO Composite Indicator Price (I-CIP), monthly average of November 2019:
# 107.23 US cents/lb, as published in the ICO Coffee Market Report of November 2019
# ("The monthly average of the Indicator rose 10.1% to 107.23 US cents/lb"). Dated to the
# month's last day. It is a deliberately conservative, citable benchmark, not a recent
# price: update value, date and reference together when a newer report is adopted.
ICO_FALLBACK = StaticPrice(
    us_cents_per_lb=107.23,
    as_of=date(2019, 11, 30),
    reference="ICO Coffee Market Report, November 2019: I-CIP monthly average 107.23 US cents/lb",
)


class CoffeePrices(pa.DataFrameModel):
    """``markets.coffee_prices``: one settlement (or fallback) price per date and symbol."""

    price_date: date
    symbol: str = pa.Field(str_length={"min_value": 1})
    price_usd_per_lb: float = pa.Field(gt=0)
    provider: str = pa.Field(isin=["yahoo", "stooq", "ico_static"])
    is_fallback: bool
    fallback_as_of: date = pa.Field(nullable=True)

    class Config:
        strict = True
        coerce = True


COFFEE_PRICES = TableSpec(
    "coffee_prices", CoffeePrices, key=("price_date", "symbol"), write_mode=MERGE, partition_expr="toYYYYMM(price_date)"
)
SCHEMA = {c: t for c, t in COFFEE_PRICES.polars_schema.items() if c != "provider"}  # a provider's frame


def to_frame(symbol: str, prices: dict[date, float], fallback_as_of: date | None = None) -> pl.DataFrame:
    """Prices by date (already in USD/lb) as the chain's common frame, sorted by date."""
    days = sorted(prices)
    return pl.DataFrame(
        {
            "price_date": days,
            "symbol": [symbol] * len(days),
            "price_usd_per_lb": [prices[d] for d in days],
            "is_fallback": [fallback_as_of is not None] * len(days),
            "fallback_as_of": [fallback_as_of] * len(days),
        },
        schema=SCHEMA,
    )


def parse_yahoo(source: str, url: str, body: Any, symbol: str = DEFAULT_SYMBOL) -> pl.DataFrame:
    """A v8 chart answer as daily closes in USD/lb (the chart is in US cents/lb)."""
    chart = body.get("chart") if isinstance(body, dict) else None
    if not isinstance(chart, dict):
        raise FetchError(source, url, f"expected {{chart: {{result, error}}}}, found {str(body)[:200]!r}")
    if chart.get("error"):
        error = chart["error"]
        detail = error.get("description") or error.get("code") if isinstance(error, dict) else error
        raise FetchError(source, url, f"Yahoo chart error: {detail}")
    results = chart.get("result") or []
    if not results or not isinstance(results[0], dict):
        raise FetchError(source, url, "Yahoo chart answered no result")
    result = results[0]
    offset = int((result.get("meta") or {}).get("gmtoffset") or 0)
    stamps = result.get("timestamp") or []
    try:
        closes = result["indicators"]["quote"][0]["close"] or []
    except (KeyError, IndexError, TypeError):
        raise FetchError(source, url, "Yahoo chart has no indicators.quote[0].close") from None
    if len(closes) != len(stamps):
        raise FetchError(source, url, f"{len(stamps)} timestamps but {len(closes)} closes")
    prices: dict[date, float] = {}
    for stamp, close in zip(stamps, closes, strict=True):
        if close is None:
            continue
        day = datetime.fromtimestamp(int(stamp) + offset, tz=UTC).date()
        prices[day] = float(close) / CENTS_PER_DOLLAR
    return to_frame(symbol, prices)


def parse_stooq(
    source: str, url: str, text: str, symbol: str = DEFAULT_SYMBOL, sessions: int = SESSIONS
) -> pl.DataFrame:
    """A Stooq daily CSV as the last ``sessions`` closes in USD/lb (the CSV is in US cents/lb)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if not reader.fieldnames or "Date" not in reader.fieldnames or "Close" not in reader.fieldnames:
        raise FetchError(source, url, f"expected a Date,…,Close CSV, found {' '.join(text.split())[:200]!r}")
    prices: dict[date, float] = {}
    for line, row in enumerate(reader, start=2):
        try:
            day = date.fromisoformat((row.get("Date") or "").strip())
            close = float((row.get("Close") or "").strip())
        except ValueError:
            raise FetchError(source, url, f"line {line}: unreadable Date/Close {row!r}") from None
        prices[day] = close / CENTS_PER_DOLLAR
    kept = dict(sorted(prices.items())[-sessions:]) if sessions else prices
    return to_frame(symbol, kept)


def check_prices(frame: pl.DataFrame) -> str | None:
    """The coffee sanity check: every price within the plausible USD/lb range."""
    low, high = PLAUSIBLE_USD_PER_LB
    outside = frame.filter(~pl.col("price_usd_per_lb").is_between(low, high))
    if outside.height:
        first = outside.row(0, named=True)
        return (
            f"{outside.height} price(s) outside {low}..{high} USD/lb "
            f"(e.g. {first['price_usd_per_lb']} on {first['price_date']}; wrong unit?)"
        )
    return None


def static_fallback(symbol: str, today: Callable[[], date]) -> pl.DataFrame:
    """One row for today carrying the ICO constant, marked as a dated fallback."""
    return to_frame(symbol, {today(): ICO_FALLBACK.us_cents_per_lb / CENTS_PER_DOLLAR}, ICO_FALLBACK.as_of)


def utc_today() -> date:
    """Today's date in UTC."""
    return datetime.now(UTC).date()


def providers(
    source: str, urls: dict[str, str], symbol: str = DEFAULT_SYMBOL, today: Callable[[], date] = utc_today
) -> list[Provider]:
    """The coffee chain: Yahoo, Stooq, then the static ICO fallback."""

    def yahoo() -> pl.DataFrame:
        url = f"{urls['yahoo'].rstrip('/')}/v8/finance/chart/{YAHOO_TICKERS[symbol]}"
        with make_client() as client:
            response = get(source, url, params={"range": f"{SESSIONS}d", "interval": "1d"}, client=client)
            return parse_yahoo(source, str(response.url), json_body(source, response, "a chart JSON"), symbol)

    def stooq() -> pl.DataFrame:
        url = f"{urls['stooq'].rstrip('/')}/q/d/l/"
        with make_client() as client:
            response = get(source, url, params={"s": STOOQ_TICKERS[symbol], "i": "d"}, client=client)
            return parse_stooq(source, str(response.url), response.text, symbol)

    return [
        Provider("yahoo", yahoo, check_prices),
        Provider("stooq", stooq, check_prices),
        Provider("ico_static", lambda: static_fallback(symbol, today), comparable=False),
    ]


def fetch_prices(
    source: str,
    urls: dict[str, str],
    *,
    tolerance: float,
    symbol: str = DEFAULT_SYMBOL,
    instance: str | None = None,
    today: Callable[[], date] = utc_today,
) -> FetchResult:
    """Prices of the first provider that answers valid data, with the chain's account in the notes."""
    chain = run_chain(
        source,
        providers(source, urls, symbol, today),
        compare_key=("price_date", "symbol"),
        compare_value="price_usd_per_lb",
        tolerance=tolerance,
        instance=instance,
        source_name=COFFEE.name,
    )
    notes: dict[str, Any] = {"providers": chain.notes(), "unit": "USD/lb (converted from US cents/lb)"}
    if chain.winner == "ico_static":
        notes["fallback"] = {
            "as_of": ICO_FALLBACK.as_of.isoformat(),
            "age_days": (today() - ICO_FALLBACK.as_of).days,
            "reference": ICO_FALLBACK.reference,
        }
    frame = chain.frame.select("price_date", "symbol", "price_usd_per_lb", "provider", "is_fallback", "fallback_as_of")
    return FetchResult(frames={"coffee_prices": frame}, notes=notes)


class CoffeeParams(SourceParams):
    """Fetch the last sessions' coffee prices from the first provider that answers and merge them into the history.

    Yahoo first, then Stooq; when both fail, one row for today carries the static ICO
    composite benchmark, marked ``is_fallback`` with its ``fallback_as_of`` date. Failed
    providers and any disagreement between Yahoo and Stooq are in the run's notes.
    ``symbol`` is the partition; the instance is ``coffee-prices`` for KC.
    """

    symbol: str = Field(default=DEFAULT_SYMBOL, description=f"market symbol, one of {', '.join(sorted(YAHOO_TICKERS))}")
    yahoo_url: str | None = Field(default=None, description="Yahoo Finance chart API root (default: public)")
    stooq_url: str | None = Field(default=None, description="Stooq CSV download root (default: public)")
    tolerance: Tolerance = None

    @field_validator("symbol")
    @classmethod
    def _known_symbol(cls, value: str) -> str:
        if value not in YAHOO_TICKERS or value not in STOOQ_TICKERS:
            raise ValueError(f"expected a symbol in {', '.join(sorted(YAHOO_TICKERS))}, found {value!r}")
        return value

    @property
    def suffix(self) -> str:
        """The instance name's tail: none for the default symbol."""
        return "" if self.symbol == DEFAULT_SYMBOL else f"-{self.symbol.lower()}"


def fetch(call: ApiCall[CoffeeParams]) -> FetchResult:
    """The run's batch: the first provider's prices (or the dated static fallback), with the chain's account."""
    p = call.params
    return fetch_prices(
        call.label, dict(call.urls), tolerance=tolerance_of(p.tolerance), symbol=p.symbol, instance=call.instance
    )


COFFEE = ApiSource(
    name="coffee",
    title="Coffee prices",
    flow_name="ingest-coffee",
    run_name="coffee {symbol}",
    summary="Ingest coffee futures prices (Yahoo, Stooq, else the ICO constant) into markets.coffee_prices.",
    database="markets",
    params=CoffeeParams,
    instance="coffee-prices{suffix}",
    urls=(UrlParam("yahoo_url", "yahoo", YAHOO_BASE_URL), UrlParam("stooq_url", "stooq", STOOQ_BASE_URL)),
    partition_columns=("symbol",),
    tables={"coffee_prices": COFFEE_PRICES},
    # a fallback row's price is as old as the constant it carries, not the day it was loaded
    data_clock=DataClock("coffee_prices", "if(is_fallback, fallback_as_of, price_date)", timedelta(days=5)),
    fetch=fetch,
)
