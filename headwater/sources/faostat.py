"""FAOSTAT data service: crops and livestock production (domain QCL) per area, as CSV.

``GET {base}/en/data/{domain}?area=…&area_cs=M49&element=…&item=…&item_cs=CPC&year=…
&show_codes=true&show_unit=true&show_flags=true&show_notes=true&null_values=false
&datasource=DB4&output_type=csv`` answers one CSV (no pages) with a UTF-8 BOM and the
columns of FAOSTAT's "Download data" page: Domain Code, Domain, Area Code (M49), Area,
Element Code, Element, Item Code (CPC), Item, Year Code, Year, Unit, Value, Flag,
Flag Description, Note. The request takes FAOSTAT's own area codes (``100`` India,
``53`` Benin) while the rows carry the M49 code (``356``), so the area code that was
asked for is kept in ``requested_area`` and identifies the snapshot. Element codes are
the ones the web page sends (``2312`` area harvested, ``2413`` yield, ``2510``
production); the rows carry the element codes FAOSTAT answers with (``5312``, ``5412``,
``5510``). An empty Value (flag ``M``, missing) is null, never 0; CPC item codes keep
their leading zeros (``01371``).
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pydantic import Field, field_validator

from headwater.bodies import csv_frame
from headwater.errors import FetchError
from headwater.http import get, make_client
from headwater.params import Codes, PositiveInts
from headwater.spec import ApiCall, ApiSource, SourceParams, UrlParam
from headwater.tables import TableSpec

DEFAULT_BASE_URL = "https://fenixservices.fao.org/faostat/api/v1"
LANGUAGE = "en"
DOMAIN = "QCL"
DEFAULT_AREA = "53"  # Benin (FAOSTAT area code; M49 204)
DEFAULT_ELEMENTS = (
    "2312",  # area harvested (answered as 5312, ha)
    "2413",  # yield (answered as 5412, kg/ha)
    "2510",  # production (answered as 5510, t)
)

# CSV header → table column, in the order FAOSTAT writes them. ``Year Code`` equals
# ``Year`` in QCL and is checked, not stored.
CSV_COLUMNS: dict[str, str] = {
    "Domain Code": "domain_code",
    "Domain": "domain",
    "Area Code (M49)": "area_code",
    "Area": "area",
    "Element Code": "element_code",
    "Element": "element",
    "Item Code (CPC)": "item_code",
    "Item": "item",
    "Year Code": "year_code",
    "Year": "year",
    "Unit": "unit",
    "Value": "value",
    "Flag": "flag",
    "Flag Description": "flag_description",
    "Note": "note",
}


class Production(pa.DataFrameModel):
    """``faostat.production``: one value per requested area, M49 area, element, CPC item and year."""

    domain_code: str = pa.Field(str_length={"min_value": 1})
    requested_area: str = pa.Field(str_length={"min_value": 1})
    domain: str
    area_code: str = pa.Field(str_matches=r"^\d+$")
    area: str
    element_code: str = pa.Field(str_matches=r"^\d+$")
    element: str
    item_code: str = pa.Field(str_length={"min_value": 1})
    item: str
    year: int = pa.Field(ge=1900, le=2200)
    unit: str
    value: float = pa.Field(nullable=True)
    flag: str
    flag_description: str
    note: str

    class Config:
        strict = True
        coerce = True


PRODUCTION = TableSpec("production", Production, key=("area_code", "element_code", "item_code", "year"))
SCHEMA = PRODUCTION.polars_schema


def data_url(base_url: str, domain: str = DOMAIN) -> str:
    """The data service URL of one domain."""
    return f"{base_url.rstrip('/')}/{LANGUAGE}/data/{domain}"


def data_params(
    area: str, elements: tuple[str, ...], items: tuple[str, ...] = (), years: tuple[int, ...] = ()
) -> dict[str, str]:
    """Query parameters of one CSV download; items and years are left out (all) when empty."""
    params = {"area": area, "area_cs": "M49", "element": ",".join(elements)}
    if items:
        params["item"] = ",".join(items)
    params["item_cs"] = "CPC"
    if years:
        params["year"] = ",".join(str(y) for y in years)
    params.update(
        show_codes="true",
        show_unit="true",
        show_flags="true",
        show_notes="true",
        null_values="false",
        datasource="DB4",
        output_type="csv",
    )
    return params


def _numbers(source: str, url: str, raw: pl.Series, dtype: type[pl.DataType], what: str) -> pl.Series:
    """``raw`` (strings) as ``dtype``; blanks are null, anything else that is not a number fails."""
    text = raw.str.strip_chars()
    blank = text.is_null() | (text == "")
    parsed = text.cast(dtype, strict=False)
    bad = raw.filter(~blank & parsed.is_null())
    if bad.len():
        raise FetchError(source, url, f"expected numbers in {what}, found {bad.head(3).to_list()!r}")
    return parsed


def parse_csv(source: str, url: str, body: bytes, requested_area: str) -> pl.DataFrame:
    """The ``production`` frame of one CSV response; anything but the expected header raises FetchError."""
    raw = csv_frame(source, url, body, "a FAOSTAT CSV")
    if raw.columns != list(CSV_COLUMNS):
        raise FetchError(source, url, f"expected the CSV columns {list(CSV_COLUMNS)}, found {raw.columns[:20]}")
    raw = raw.rename(CSV_COLUMNS)
    year = _numbers(source, url, raw["year"], pl.Int64, "Year")
    year_code = _numbers(source, url, raw["year_code"], pl.Int64, "Year Code")
    if (year.is_null() | (year != year_code)).any():
        raise FetchError(source, url, "expected Year Code equal to Year on every row (a year range?)")
    value = _numbers(source, url, raw["value"], pl.Float64, "Value")
    frame = raw.drop("year_code").with_columns(
        pl.lit(requested_area).alias("requested_area"),
        year.alias("year"),
        value.alias("value"),
        *(pl.col(c).fill_null("") for c, t in SCHEMA.items() if t == pl.String and c != "requested_area"),
    )
    return frame.select(pl.col(c).cast(t) for c, t in SCHEMA.items())


def fetch_production(
    source: str,
    base_url: str,
    area: str,
    elements: tuple[str, ...] = DEFAULT_ELEMENTS,
    items: tuple[str, ...] = (),
    years: tuple[int, ...] = (),
) -> dict[str, pl.DataFrame]:
    """One area's QCL download (a single response, no pages) as the ``production`` frame."""
    url = data_url(base_url)
    with make_client() as client:
        response = get(source, url, params=data_params(area, elements, items, years), client=client)
    return {"production": parse_csv(source, str(response.url), response.content, area)}


class FaostatParams(SourceParams):
    """Download one area's QCL production CSV and replace its partition.

    ``area`` is a FAOSTAT area code (``53`` Benin, ``100`` India); with the domain it is
    the partition, so each run is a full snapshot of that area (for the elements, items
    and years asked for) and a rerun on the same response is ``unchanged``. No items or
    years means all of them. The instance is ``faostat-qcl`` for the default area and
    ``faostat-qcl-<area>`` for any other, so each area has its own circuit breaker.
    """

    area: str = Field(default=DEFAULT_AREA, description=f"FAOSTAT area code (Benin is {DEFAULT_AREA}, India 100)")
    elements: Codes | None = Field(default=None, description="element codes (default 2312,2413,2510)")
    items: Codes | None = Field(default=None, description="item codes (default all)")
    years: PositiveInts | None = Field(default=None, description="years (default all)")
    base_url: str | None = Field(default=None, description="data service root (default: the public API)")

    @field_validator("area")
    @classmethod
    def _one_area(cls, value: str) -> str:
        if not value.strip() or "," in value:
            raise ValueError(f"expected one FAOSTAT area code, found {value!r}")
        return value

    @property
    def domain_code(self) -> str:
        """The partition's domain (always QCL)."""
        return DOMAIN

    @property
    def requested_area(self) -> str:
        """The partition's area."""
        return self.area

    @property
    def area_suffix(self) -> str:
        """``""`` for the default area, else ``-<area>`` (the instance name's tail)."""
        return "" if self.area == DEFAULT_AREA else f"-{self.area}"


def fetch(call: ApiCall[FaostatParams]) -> dict[str, pl.DataFrame]:
    """The run's batch: the area's production CSV."""
    p = call.params
    return fetch_production(
        call.label, call.url, p.area, tuple(p.elements or DEFAULT_ELEMENTS), tuple(p.items or ()), tuple(p.years or ())
    )


FAOSTAT = ApiSource(
    name="faostat",
    title="FAOSTAT",
    flow_name="ingest-faostat",
    run_name="faostat qcl area {area}",
    summary="Ingest FAOSTAT crops and livestock production of one area into ClickHouse (faostat.production).",
    database="faostat",
    params=FaostatParams,
    instance="faostat-qcl{area_suffix}",
    urls=(UrlParam("base_url", "faostat", DEFAULT_BASE_URL, rate_limit=2.0),),
    partition_columns=("domain_code", "requested_area"),
    tables={"production": PRODUCTION},
    fetch=fetch,
)
