"""ILOSTAT indicator data from the rplumber service, as code-style CSV.

``GET {base}/data/indicator/?id={DATASET}&ref_area=BEN+TGO&type=code&format=.csv``
answers one CSV (no pages) whose header is the dataset's own columns: ``ref_area,
source, indicator, sex, classif1, time, obs_value, obs_status, note_classif,
note_indicator, note_source`` for UNE_DEAP_SEX_AGE_RT_A; datasets without a
breakdown leave out ``classif1``/``note_classif`` (others add ``classif2``). The
dataset id carries the frequency (``…_A``), the rows' ``indicator`` does not
(``UNE_DEAP_SEX_AGE_RT``). Lists are sent ``+``-joined with a literal ``+``
(rplumber reads ``%2B`` as part of one code), and a blank filter means "all", so an
empty one is never sent. An unknown or retired dataset answers HTTP 400 with
``{"error": "deprecated or invalid dataset id=…", "documentation": …}``, whose start
``headwater.http`` puts in the FetchError; the same body arriving with HTTP 200 is
turned into a FetchError with its ``error`` text here.

Only ``type=code`` is supported: the label style (``ref_area.label``, …) is refused.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pandera.polars as pa
import polars as pl
from pydantic import Field, field_validator

from headwater.bodies import csv_frame
from headwater.errors import FetchError
from headwater.http import get, make_client
from headwater.spec import ApiCall, ApiSource, SourceParams, UrlParam
from headwater.tables import TableSpec

DEFAULT_BASE_URL = "https://rplumber.ilo.org"
DEFAULT_REF_AREAS = ("BEN",)
EMPLOYMENT_INDICATORS = (
    "UNE_DEAP_SEX_AGE_RT_A",  # unemployment rate by sex and age (%), annual
    "EMP_NIFL_SEX_RT_A",  # informal employment rate by sex (%), annual
)
DATASET_ID = re.compile(r"^[A-Z0-9]+(?:_[A-Z0-9]+)*$")
REF_AREA = re.compile(r"^[A-Z0-9]+$")
FREQUENCY_SUFFIX = re.compile(r"_[AQM]$")

REQUIRED_COLUMNS = ("ref_area", "source", "indicator", "time", "obs_value")
OPTIONAL_COLUMNS = ("sex", "classif1", "classif2", "obs_status", "note_classif", "note_indicator", "note_source")


class IndicatorValues(pa.DataFrameModel):
    """``ilostat.indicator_values``: one observation per dataset, area, source, breakdown and period."""

    dataset_id: str = pa.Field(str_matches=DATASET_ID.pattern)
    indicator: str = pa.Field(str_length={"min_value": 1})
    ref_area: str = pa.Field(str_length={"min_value": 1})
    source: str = pa.Field(str_length={"min_value": 1})
    sex: str
    classif1: str
    classif2: str
    time: str = pa.Field(str_matches=r"^\d{4}(?:Q[1-4]|M\d{2})?$")
    obs_value: float = pa.Field(nullable=True)
    obs_status: str
    note_classif: str
    note_indicator: str
    note_source: str

    class Config:
        strict = True
        coerce = True


INDICATOR_VALUES = TableSpec(
    "indicator_values", IndicatorValues, key=("indicator", "ref_area", "source", "sex", "classif1", "classif2", "time")
)


SCHEMA = INDICATOR_VALUES.polars_schema


def indicator_of(dataset_id: str) -> str:
    """The rows' ``indicator`` of a dataset id: the id without its frequency suffix."""
    return FREQUENCY_SUFFIX.sub("", dataset_id)


def indicator_url(base_url: str, dataset_id: str, ref_areas: tuple[str, ...]) -> str:
    """The code-style CSV URL of one dataset, filtered on the reference areas (``+``-joined)."""
    query = [f"id={quote(dataset_id, safe='')}"]
    if ref_areas:
        query.append("ref_area=" + "+".join(quote(a, safe="") for a in ref_areas))
    query += ["type=code", "format=.csv"]
    return f"{base_url.rstrip('/')}/data/indicator/?{'&'.join(query)}"


def error_text(body: bytes) -> str | None:
    """The ``error`` of rplumber's JSON error body, or None when ``body`` is not one."""
    text = body.decode("utf-8-sig", errors="replace").strip()
    if not text.startswith("{"):
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if isinstance(document, dict) and document.get("error"):
        return str(document["error"])
    return None


def parse_csv(source: str, url: str, body: bytes, dataset_id: str) -> pl.DataFrame:
    """The ``indicator_values`` frame of one CSV response; any other body raises FetchError."""
    error = error_text(body)
    if error is not None:
        raise FetchError(source, url, f"ILOSTAT API error: {error}")
    raw = csv_frame(source, url, body, "an rplumber CSV")
    columns = set(raw.columns)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    unknown = sorted(columns - set(REQUIRED_COLUMNS) - set(OPTIONAL_COLUMNS))
    if missing or unknown:
        style = " (label-style CSV: only type=code is supported)" if any(c.endswith(".label") for c in columns) else ""
        raise FetchError(
            source, url, f"expected code-style columns {list(REQUIRED_COLUMNS)}, found {raw.columns[:20]}{style}"
        )
    text = raw["obs_value"].str.strip_chars()
    value = text.cast(pl.Float64, strict=False)
    bad = raw["obs_value"].filter(text.is_not_null() & (text != "") & value.is_null())
    if bad.len():
        raise FetchError(source, url, f"expected numbers in obs_value, found {bad.head(3).to_list()!r}")
    expected = indicator_of(dataset_id)
    others = raw["indicator"].filter(raw["indicator"] != expected).unique().sort()
    if others.len():
        raise FetchError(source, url, f"expected indicator {expected} on every row, found {others.head(3).to_list()}")
    frame = raw.with_columns(
        pl.lit(dataset_id).alias("dataset_id"),
        value.alias("obs_value"),
        *(pl.lit("").alias(c) for c in OPTIONAL_COLUMNS if c not in columns),
    ).with_columns(pl.col(c).fill_null("") for c, t in SCHEMA.items() if t == pl.String)
    return frame.select(pl.col(c).cast(t) for c, t in SCHEMA.items())


def fetch_indicator(source: str, base_url: str, dataset_id: str, ref_areas: tuple[str, ...]) -> dict[str, pl.DataFrame]:
    """One dataset for the reference areas (a single response, no pages) as the ``indicator_values`` frame."""
    url = indicator_url(base_url, dataset_id, ref_areas)
    with make_client() as client:
        response = get(source, url, client=client)
    return {"indicator_values": parse_csv(source, str(response.url), response.content, dataset_id)}


class IlostatParams(SourceParams):
    """Download one dataset's code-style CSV for the reference areas and replace its partition.

    ``indicator`` is the rplumber dataset id with its frequency (``UNE_DEAP_SEX_AGE_RT_A``;
    the employment vertical's defaults are in ``EMPLOYMENT_INDICATORS``). It is the
    partition: each run is a full snapshot of it for the areas asked for (default BEN),
    so a rerun on the same response is ``unchanged`` and adds no rows.
    """

    indicator: str = Field(description="rplumber dataset id with its frequency, e.g. UNE_DEAP_SEX_AGE_RT_A")
    ref_areas: list[str] | None = Field(default=None, description="reference area codes like BEN or X01 (default BEN)")
    base_url: str | None = Field(default=None, description="rplumber root (default: the public API)")

    @field_validator("indicator")
    @classmethod
    def _dataset_id(cls, value: str) -> str:
        if not DATASET_ID.match(value):
            raise ValueError(f"expected a dataset id like UNE_DEAP_SEX_AGE_RT_A, found {value!r}")
        return value

    @field_validator("ref_areas")
    @classmethod
    def _areas(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        areas = [a.strip().upper() for a in value if a.strip()]
        bad = [a for a in areas if not REF_AREA.match(a)]
        if bad or not areas:
            raise ValueError(f"expected reference area codes like BEN or X01, found {bad or value!r}")
        return areas

    @property
    def dataset_id(self) -> str:
        """The partition: the dataset id."""
        return self.indicator

    @property
    def slug(self) -> str:
        """The dataset id as an instance name part (``une-deap-sex-age-rt-a``)."""
        return self.indicator.lower().replace("_", "-")

    @property
    def chosen_areas(self) -> tuple[str, ...]:
        """The reference areas asked for, else the default."""
        return tuple(self.ref_areas or DEFAULT_REF_AREAS)


def fetch(call: ApiCall[IlostatParams]) -> dict[str, pl.DataFrame]:
    """The run's batch: the dataset for the chosen reference areas."""
    return fetch_indicator(call.label, call.url, call.params.indicator, call.params.chosen_areas)


ILOSTAT = ApiSource(
    name="ilostat",
    title="ILOSTAT",
    flow_name="ingest-ilostat",
    run_name="ilostat {indicator}",
    summary="Ingest one ILOSTAT dataset for a list of countries into ClickHouse (ilostat.indicator_values).",
    database="ilostat",
    params=IlostatParams,
    instance="ilostat-{slug}",
    urls=(UrlParam("base_url", "ilostat", DEFAULT_BASE_URL, rate_limit=2.0),),
    partition_columns=("dataset_id",),
    tables={"indicator_values": INDICATOR_VALUES},
    fetch=fetch,
)
