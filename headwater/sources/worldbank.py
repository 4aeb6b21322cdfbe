"""World Bank Indicators API v2: indicator values per country and year.

``GET {base}/v2/country/{ISO3;ISO3}/indicator/{id}?format=json&per_page=…&page=…`` answers
``[meta, records]`` (``meta.pages`` drives paging; ``records`` is null when there is no
data) or, with HTTP 200, an error envelope ``[{"message": [{"id", "key", "value"}]}]``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pandera.polars as pa
import polars as pl
from pydantic import Field, field_validator

from headwater.bodies import json_body
from headwater.errors import FetchError
from headwater.http import get, make_client, paginate
from headwater.params import Codes, PositiveInt, one_of
from headwater.spec import ApiCall, ApiSource, SourceParams, UrlParam
from headwater.tables import TableSpec

DEFAULT_BASE_URL = "https://api.worldbank.org"
DEFAULT_COUNTRIES = ("BEN",)
PER_PAGE = 1000

VERTICALS: dict[str, tuple[str, ...]] = {
    "agriculture": (
        "NV.AGR.TOTL.ZS",  # agriculture, forestry and fishing, value added (% of GDP)
        "AG.YLD.CREL.KG",  # cereal yield (kg per hectare)
        "AG.LND.ARBL.ZS",  # arable land (% of land area)
    ),
    "employment": (
        "SL.UEM.TOTL.ZS",  # unemployment, total (% of labour force, modelled ILO estimate)
        "SL.TLF.TOTL.IN",  # labour force, total
        "SL.AGR.EMPL.ZS",  # employment in agriculture (% of total employment)
        "SL.IND.EMPL.ZS",  # employment in industry
        "SL.SRV.EMPL.ZS",  # employment in services
    ),
    "business": (
        "IC.BUS.NDNS.ZS",  # new business density (new registrations per 1,000 people ages 15-64)
        "IC.BUS.NREG",  # new businesses registered (number)
        "IC.REG.DURS",  # time required to start a business (days)
    ),
}


class IndicatorValues(pa.DataFrameModel):
    """``worldbank.indicator_values``: one value per vertical, indicator, country and year."""

    vertical: str = pa.Field(isin=list(VERTICALS))
    indicator_id: str = pa.Field(str_length={"min_value": 1})
    indicator_name: str
    country_id: str = pa.Field(str_length={"min_value": 1})
    country_iso3: str
    country_name: str
    year: int = pa.Field(ge=1800, le=2200)
    value: float = pa.Field(nullable=True)
    unit: str
    obs_status: str
    decimal: int

    class Config:
        strict = True
        coerce = True


INDICATOR_VALUES = TableSpec("indicator_values", IndicatorValues, key=("indicator_id", "country_id", "year"))


class WorldBankParams(SourceParams):
    """Fetch every page of the vertical's indicators for the countries and replace its partition.

    The vertical (agriculture, employment, business) is the partition: each run is a full
    snapshot of it, so a rerun on the same responses is ``unchanged`` and adds no rows.
    """

    vertical: str = Field(description=f"the vertical, one of {', '.join(VERTICALS)} (the partition)")
    countries: Codes | None = Field(default=None, description="ISO3 country codes (default BEN)")
    indicators: Codes | None = Field(default=None, description="indicator ids (default: the vertical's)")
    base_url: str | None = Field(default=None, description="API root (default: the public API)")
    per_page: PositiveInt = Field(default=PER_PAGE, description="records per page")

    @field_validator("vertical")
    @classmethod
    def _known_vertical(cls, value: str) -> str:
        return one_of("a vertical", value, VERTICALS)

    @property
    def chosen_countries(self) -> tuple[str, ...]:
        """The countries asked for, else the default."""
        return tuple(self.countries or DEFAULT_COUNTRIES)

    @property
    def chosen_indicators(self) -> tuple[str, ...]:
        """The indicators asked for, else the vertical's."""
        return tuple(self.indicators or VERTICALS[self.vertical])


def indicator_url(base_url: str, countries: tuple[str, ...], indicator: str) -> str:
    """The URL of one indicator for a list of countries."""
    return f"{base_url.rstrip('/')}/v2/country/{';'.join(countries)}/indicator/{indicator}"


def parse_page(source: str, url: str, body: Any) -> tuple[list[dict[str, Any]], int]:
    """Records and page count of one response; the HTTP-200 error envelope raises FetchError."""
    if isinstance(body, list) and len(body) == 1 and isinstance(body[0], dict) and "message" in body[0]:
        messages = "; ".join(
            f"{m.get('id', '?')} {m.get('key', '')}: {m.get('value', '')}".strip() for m in body[0]["message"]
        )
        raise FetchError(source, url, f"World Bank API error: {messages}")
    if not (isinstance(body, list) and len(body) == 2 and isinstance(body[0], dict)):
        raise FetchError(source, url, f"expected a [meta, records] envelope, found {str(body)[:200]!r}")
    meta, records = body
    return list(records or []), int(meta.get("pages") or 1)


def to_frame(vertical: str, records: list[dict[str, Any]]) -> pl.DataFrame:
    """Normalise indicator records into the table's frame."""
    return INDICATOR_VALUES.frame(
        {
            "vertical": [vertical] * len(records),
            "indicator_id": [r["indicator"]["id"] for r in records],
            "indicator_name": [r["indicator"]["value"] for r in records],
            "country_id": [r["country"]["id"] for r in records],
            "country_iso3": [r.get("countryiso3code") or "" for r in records],
            "country_name": [r["country"]["value"] for r in records],
            "year": [int(r["date"]) for r in records],
            "value": [None if r.get("value") is None else float(r["value"]) for r in records],
            "unit": [r.get("unit") or "" for r in records],
            "obs_status": [r.get("obs_status") or "" for r in records],
            "decimal": [int(r.get("decimal") or 0) for r in records],
        },
    )


def fetch_indicators(
    source: str,
    base_url: str,
    vertical: str,
    countries: tuple[str, ...],
    indicators: tuple[str, ...],
    per_page: int = PER_PAGE,
) -> dict[str, pl.DataFrame]:
    """Every page of every indicator of the vertical, as the ``indicator_values`` frame."""
    records: list[dict[str, Any]] = []
    with make_client() as client:
        for indicator in indicators:
            url = indicator_url(base_url, countries, indicator)

            def page(number: int, url: str = url, client: httpx.Client = client) -> tuple[list[dict[str, Any]], int]:
                params = {"format": "json", "per_page": per_page, "page": number}
                response = get(source, url, params=params, client=client)
                return parse_page(source, str(response.url), json_body(source, response, "World Bank JSON"))

            for batch in paginate(page):
                records.extend(batch)
    return {"indicator_values": to_frame(vertical, records)}


def fetch(call: ApiCall[WorldBankParams]) -> dict[str, pl.DataFrame]:
    """The run's batch: every indicator of the vertical for the chosen countries."""
    p = call.params
    return fetch_indicators(call.label, call.url, p.vertical, p.chosen_countries, p.chosen_indicators, p.per_page)


WORLDBANK = ApiSource(
    name="worldbank",
    title="World Bank",
    flow_name="ingest-worldbank",
    run_name="worldbank {vertical}",
    summary="Ingest World Bank indicators of one vertical into ClickHouse (worldbank.indicator_values).",
    database="worldbank",
    params=WorldBankParams,
    instance="worldbank-{vertical}",
    urls=(UrlParam("base_url", "worldbank", DEFAULT_BASE_URL, rate_limit=5.0),),
    partition_columns=("vertical",),
    tables={"indicator_values": INDICATOR_VALUES},
    fetch=fetch,
)
