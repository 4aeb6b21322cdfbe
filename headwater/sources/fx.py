"""Daily euro reference FX rates from a chain of providers (``headwater.providers``).

Providers, in order:

1. **ECB** ``GET {ecb}/stats/eurofxref/eurofxref-daily.xml``: a gesmes envelope whose
   default namespace is ``http://www.ecb.int/vocabulary/2002-08-01/eurofxref``::

       <gesmes:Envelope …><Cube><Cube time='2025-05-09'>
         <Cube currency='USD' rate='1.1252'/> …

   Rates are units of ``currency`` per 1 EUR, for the day in ``time``.
2. **Frankfurter** ``GET {frankfurter}/v1/latest?base=EUR``:
   ``{"amount": 1.0, "base": "EUR", "date": "2025-12-17", "rates": {"USD": 1.1722, …}}``
   (Frankfurter republishes the ECB reference rates).
3. **open.er-api** ``GET {erapi}/v6/latest/EUR``: ``{"result": "success", "base_code": "EUR",
   "time_last_update_unix": …, "rates": {"EUR": 1, "USD": …}}``; on failure
   ``{"result": "error", "error-type": "…"}``. No recorded response exists: this parser
   follows the provider's documentation (exchangerate-api.com "Open Access" endpoint,
   the fields ``result``, ``base_code``, ``time_last_update_unix``, ``rates``). Its
   ``rate_date`` is the UTC date of ``time_last_update_unix``; it also quotes the base
   itself (``EUR: 1``), which is dropped.

Every provider is normalised to rates of one base, EUR (a provider answering another
base is rebased through its EUR quote).

Table ``rates``: ``rate_date, base, quote, rate, provider``, key ``(rate_date, base,
quote)``; partition ``base``. It is written in ``merge`` mode (monthly ClickHouse
partitions of ``rate_date``), so each day's rates accumulate into a history instead of
replacing yesterday's, and a day answered again (by the same or a fallback provider)
deduplicates by key, the newest load winning. A rerun on the same answers is
``unchanged``.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
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

DEFAULT_BASE = "EUR"
ECB_BASE_URL = "https://www.ecb.europa.eu"
FRANKFURTER_BASE_URL = "https://api.frankfurter.dev"
ERAPI_BASE_URL = "https://open.er-api.com"
ECB_NAMESPACE = "http://www.ecb.int/vocabulary/2002-08-01/eurofxref"
CURRENCY = re.compile(r"^[A-Z]{3}$")
MIN_QUOTES = 5  # every provider quotes 30+ currencies; fewer means a truncated answer


class Rates(pa.DataFrameModel):
    """``fx.rates``: units of ``quote`` per one ``base`` on ``rate_date``."""

    rate_date: date
    base: str = pa.Field(str_matches=r"^[A-Z]{3}$")
    quote: str = pa.Field(str_matches=r"^[A-Z]{3}$")
    rate: float = pa.Field(gt=0)
    provider: str = pa.Field(isin=["ecb", "frankfurter", "erapi"])

    class Config:
        strict = True
        coerce = True


RATES = TableSpec(
    "rates", Rates, key=("rate_date", "base", "quote"), write_mode=MERGE, partition_expr="toYYYYMM(rate_date)"
)
SCHEMA = {c: RATES.polars_schema[c] for c in ("rate_date", "base", "quote", "rate")}  # a provider's frame


def to_frame(rows: list[tuple[date, str, str, float]]) -> pl.DataFrame:
    """Rows ``(rate_date, base, quote, rate)`` as the chain's common frame, sorted."""
    frame = pl.DataFrame(rows, schema=SCHEMA, orient="row")
    return frame.sort("rate_date", "quote")


def rebase(source: str, url: str, rates: dict[str, float], base: str, target: str) -> dict[str, float]:
    """``rates`` (per one ``base``) as rates per one ``target``; FetchError when there is no path."""
    if base == target:
        return {q: r for q, r in rates.items() if q != target}
    pivot = rates.get(target)
    if not pivot:
        raise FetchError(source, url, f"rates are per {base} and quote no {target} to rebase them on")
    rebased = {q: r / pivot for q, r in rates.items() if q != target}
    rebased[base] = 1.0 / pivot
    return rebased


def _rate(source: str, url: str, currency: str, value: Any) -> float:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise FetchError(source, url, f"rate of {currency} is not a number: {value!r}") from None
    if not math.isfinite(rate) or rate <= 0:
        raise FetchError(source, url, f"rate of {currency} is not a positive number: {value!r}")
    return rate


def _currency(source: str, url: str, code: Any) -> str:
    if not isinstance(code, str) or not CURRENCY.match(code):
        raise FetchError(source, url, f"expected a 3-letter currency code, found {code!r}")
    return code


def parse_ecb(source: str, url: str, body: bytes, base: str = DEFAULT_BASE) -> pl.DataFrame:
    """The ECB daily XML as rows of ``base`` (the ECB's rates are per 1 EUR)."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        # The reference rates never carry a DTD; refusing one rules out entity-expansion
        # attacks, so the standard library parser is safe for the rest (expat does not
        # fetch external entities).
        raise FetchError(source, url, "ECB XML carries a DTD or entity declarations; refused")
    try:
        root = ET.fromstring(body)  # noqa: S314 - DTDs are refused above
    except ET.ParseError as error:
        raise FetchError(source, url, f"ECB answered malformed XML: {error}") from None
    ns = {"e": ECB_NAMESPACE}
    days = root.findall("./e:Cube/e:Cube[@time]", ns)
    if not days:
        raise FetchError(source, url, "ECB XML has no <Cube time=…> element (namespace or layout changed?)")
    rows: list[tuple[date, str, str, float]] = []
    for day in days:
        try:
            rate_date = date.fromisoformat(day.attrib["time"])
        except ValueError:
            raise FetchError(source, url, f"ECB Cube time is not a date: {day.attrib['time']!r}") from None
        rates = {
            _currency(source, url, cube.get("currency")): _rate(
                source, url, str(cube.get("currency")), cube.get("rate")
            )
            for cube in day.findall("e:Cube", ns)
        }
        rows.extend((rate_date, base, q, r) for q, r in rebase(source, url, rates, "EUR", base).items())
    return to_frame(rows)


def parse_frankfurter(source: str, url: str, body: Any, base: str = DEFAULT_BASE) -> pl.DataFrame:
    """Frankfurter ``/v1/latest`` as rows of ``base``."""
    if not isinstance(body, dict) or not isinstance(body.get("rates"), dict) or "date" not in body:
        raise FetchError(source, url, f"expected {{base, date, rates}}, found {str(body)[:200]!r}")
    try:
        rate_date = date.fromisoformat(str(body["date"]))
    except ValueError:
        raise FetchError(source, url, f"Frankfurter date is not a date: {body['date']!r}") from None
    amount = _rate(source, url, "amount", body.get("amount", 1.0))
    rates = {_currency(source, url, q): _rate(source, url, q, r) / amount for q, r in body["rates"].items()}
    rebased = rebase(source, url, rates, _currency(source, url, body.get("base")), base)
    return to_frame([(rate_date, base, q, r) for q, r in rebased.items()])


def parse_erapi(source: str, url: str, body: Any, base: str = DEFAULT_BASE) -> pl.DataFrame:
    """open.er-api ``/v6/latest/{base}`` as rows of ``base`` (parser built from the documentation)."""
    if not isinstance(body, dict):
        raise FetchError(source, url, f"expected a JSON object, found {str(body)[:200]!r}")
    if body.get("result") != "success":
        raise FetchError(source, url, f"open.er-api answered result={body.get('result')!r}: {body.get('error-type')}")
    if not isinstance(body.get("rates"), dict) or not isinstance(body.get("time_last_update_unix"), int | float):
        raise FetchError(source, url, "expected rates and time_last_update_unix in the answer")
    rate_date = datetime.fromtimestamp(body["time_last_update_unix"], tz=UTC).date()
    rates = {_currency(source, url, q): _rate(source, url, q, r) for q, r in body["rates"].items()}
    rebased = rebase(source, url, rates, _currency(source, url, body.get("base_code")), base)
    return to_frame([(rate_date, base, q, r) for q, r in rebased.items()])


def check_rates(frame: pl.DataFrame) -> str | None:
    """The FX sanity check: enough quotes, and a USD quote (every provider has one)."""
    quotes = set(frame.get_column("quote").to_list())
    if len(quotes) < MIN_QUOTES:
        return f"only {len(quotes)} currencies quoted (expected at least {MIN_QUOTES})"
    if "USD" not in quotes:
        return "no USD rate"
    return None


def providers(source: str, urls: dict[str, str], base: str = DEFAULT_BASE) -> list[Provider]:
    """The FX chain, ECB first; ``urls`` maps provider name to its API root."""

    def ecb() -> pl.DataFrame:
        url = f"{urls['ecb'].rstrip('/')}/stats/eurofxref/eurofxref-daily.xml"
        with make_client() as client:
            return parse_ecb(source, url, get(source, url, client=client).content, base)

    def frankfurter() -> pl.DataFrame:
        url = f"{urls['frankfurter'].rstrip('/')}/v1/latest"
        with make_client() as client:
            response = get(source, url, params={"base": base}, client=client)
            return parse_frankfurter(source, str(response.url), json_body(source, response), base)

    def erapi() -> pl.DataFrame:
        url = f"{urls['erapi'].rstrip('/')}/v6/latest/{base}"
        with make_client() as client:
            return parse_erapi(source, url, json_body(source, get(source, url, client=client)), base)

    return [
        Provider("ecb", ecb, check_rates),
        Provider("frankfurter", frankfurter, check_rates),
        Provider("erapi", erapi, check_rates),
    ]


def fetch_rates(
    source: str,
    urls: dict[str, str],
    *,
    tolerance: float,
    base: str = DEFAULT_BASE,
    instance: str | None = None,
) -> FetchResult:
    """The rates of the first provider that answers valid data, with the chain's account in the notes."""
    chain = run_chain(
        source,
        providers(source, urls, base),
        compare_key=("rate_date", "base", "quote"),
        compare_value="rate",
        tolerance=tolerance,
        instance=instance,
        source_name=FX.name,
    )
    frame = chain.frame.select("rate_date", "base", "quote", "rate", "provider")
    return FetchResult(frames={"rates": frame}, notes={"providers": chain.notes()})


class FxParams(SourceParams):
    """Fetch the latest reference rates from the first provider that answers and merge them into the base's history.

    The chain (ECB, then Frankfurter, then open.er-api) records every failed provider
    and compares the winner with the next provider that answers; both land in the
    run's notes (META.json and the ledger). ``base`` is the partition; the instance is
    ``fx-rates`` for EUR and ``fx-rates-<base>`` otherwise.
    """

    base: str = Field(default=DEFAULT_BASE, description="base currency, a 3-letter code (the partition)")
    ecb_url: str | None = Field(default=None, description="ECB root (default: the public site)")
    frankfurter_url: str | None = Field(default=None, description="Frankfurter API root (default: public)")
    erapi_url: str | None = Field(default=None, description="open.er-api.com root (default: public)")
    tolerance: Tolerance = None

    @field_validator("base")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not CURRENCY.match(value):
            raise ValueError(f"expected a 3-letter currency code as base, found {value!r}")
        return value

    @property
    def suffix(self) -> str:
        """The instance name's tail: none for the default base."""
        return "" if self.base == DEFAULT_BASE else f"-{self.base.lower()}"


def fetch(call: ApiCall[FxParams]) -> FetchResult:
    """The run's batch: the first provider's rates, with the chain's account."""
    p = call.params
    return fetch_rates(
        call.label, dict(call.urls), tolerance=tolerance_of(p.tolerance), base=p.base, instance=call.instance
    )


FX = ApiSource(
    name="fx",
    title="FX reference rates",
    flow_name="ingest-fx",
    run_name="fx {base}",
    summary="Ingest the latest FX reference rates (ECB, Frankfurter, else open.er-api) into markets.rates.",
    database="markets",
    params=FxParams,
    instance="fx-rates{suffix}",
    urls=(
        UrlParam("ecb_url", "ecb", ECB_BASE_URL),
        UrlParam("frankfurter_url", "frankfurter", FRANKFURTER_BASE_URL),
        UrlParam("erapi_url", "erapi", ERAPI_BASE_URL),
    ),
    partition_columns=("base",),
    tables={"rates": RATES},
    data_clock=DataClock("rates", "rate_date", timedelta(days=5)),  # weekends and TARGET holidays
    fetch=fetch,
)
