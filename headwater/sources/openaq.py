"""OpenAQ v3 air quality: incremental measurements per sensor, deduplicated, range-checked.

- ``GET {base}/v3/locations/{id}`` lists a location's sensors (locations are configuration).
- ``GET {base}/v3/sensors/{id}/measurements?datetime_from=…&limit=…&page=…`` pages through
  measurements newer than the sensor's cursor (kept in the ledger's source state; it
  advances only after a successful load).
- A location that fails for good does not fail the others: it is reported in the batch's
  ``failures`` (the run is recorded ``partial``), its sensors keep their cursors, and the
  other locations load. Only when every location fails does the run fail.
- Every request carries the API key from a Prefect ``Secret`` block as ``X-API-Key``;
  the key is never logged and never stored.
- Values outside the parameter's plausible range are quarantined (``measurements_quarantine``
  with the reason) and counted in the batch's quality score; they never reach
  ``measurements``, which merges by (sensor_id, datetime_from).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pandera.polars as pa
from pandera.engines.polars_engine import DateTime
from pydantic import Field, model_validator

from headwater.api_batch import FetchResult
from headwater.bodies import json_body
from headwater.errors import FetchError, HeadwaterError
from headwater.http import get, make_client, paginate
from headwater.params import PositiveInts
from headwater.settings import get_settings
from headwater.spec import ApiCall, ApiSource, DataClock, SourceParams, UrlParam
from headwater.tables import MERGE, TableSpec

DEFAULT_BASE_URL = "https://api.openaq.org"
DEFAULT_LOCATIONS = (2178, 8118)  # the seed's monitoring sites: Del Norte (Albuquerque), and a second site
PAGE_LIMIT = 1000
UTC_MS = {"time_unit": "ms", "time_zone": "UTC"}

# Plausible ranges per (parameter, unit): outside them a value is quarantined.
RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("pm25", "µg/m³"): (0.0, 1000.0),
    ("pm10", "µg/m³"): (0.0, 2000.0),
    ("o3", "µg/m³"): (0.0, 1000.0),
    ("o3", "ppm"): (0.0, 1.0),
    ("no2", "µg/m³"): (0.0, 2000.0),
    ("no2", "ppm"): (0.0, 2.0),
    ("temperature", "c"): (-50.0, 60.0),
    ("temperature", "°c"): (-50.0, 60.0),
    ("relativehumidity", "%"): (0.0, 100.0),
}


class Measurement(pa.DataFrameModel):
    """``openaq.measurements``: one value per sensor and period start (merged, newest wins)."""

    location_id: int = pa.Field(ge=1)
    sensor_id: int = pa.Field(ge=1)
    parameter: str = pa.Field(str_length={"min_value": 1})
    units: str
    value: float
    datetime_from: DateTime = pa.Field(dtype_kwargs=UTC_MS)
    datetime_to: DateTime = pa.Field(dtype_kwargs=UTC_MS, nullable=True)

    class Config:
        strict = True
        coerce = True


class QuarantinedMeasurement(Measurement):
    """``openaq.measurements_quarantine``: measurements kept out of the table, with why."""

    reason: str = pa.Field(str_length={"min_value": 1})


MEASUREMENTS = TableSpec(
    "measurements",
    Measurement,
    key=("sensor_id", "datetime_from"),
    write_mode=MERGE,
    partition_expr="toYYYYMM(datetime_from)",
)
QUARANTINE = TableSpec(
    "measurements_quarantine",
    QuarantinedMeasurement,
    key=("sensor_id", "datetime_from"),
    write_mode=MERGE,
    partition_expr="toYYYYMM(datetime_from)",
)


def location_set_name(locations: tuple[int, ...]) -> str:
    """``seed`` for the default locations, else the sorted ids joined by dashes."""
    return (
        "seed"
        if tuple(sorted(locations)) == tuple(sorted(DEFAULT_LOCATIONS))
        else "-".join(str(x) for x in sorted(locations))
    )


def cursor_key(sensor_id: int) -> str:
    """The ledger state key of a sensor's cursor."""
    return f"cursor:sensor:{sensor_id}"


def _utc(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC) if text else None


def _results(source: str, url: str, body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise FetchError(source, url, f"expected {{meta, results}}, found {str(body)[:200]!r}")
    return list(body["results"])


def location_sensors(
    source: str, base_url: str, location: int, client: httpx.Client, headers: Mapping[str, str]
) -> list[tuple[int, str, str]]:
    """(sensor id, parameter, units) of every sensor of a location."""
    url = f"{base_url.rstrip('/')}/v3/locations/{location}"
    response = get(source, url, headers=headers, client=client)
    results = _results(source, str(response.url), json_body(source, response, "OpenAQ JSON"))
    if not results:
        raise FetchError(source, str(response.url), f"location {location} not found")
    return [(int(s["id"]), s["parameter"]["name"], s["parameter"]["units"]) for s in results[0].get("sensors") or []]


def sensor_measurements(
    source: str,
    base_url: str,
    sensor: int,
    since: datetime | None,
    client: httpx.Client,
    headers: Mapping[str, str],
    limit: int = PAGE_LIMIT,
) -> list[dict[str, Any]]:
    """Every measurement of a sensor newer than ``since``, across pages."""
    url = f"{base_url.rstrip('/')}/v3/sensors/{sensor}/measurements"

    def page(number: int) -> tuple[list[dict[str, Any]], int]:
        params: dict[str, Any] = {"limit": limit, "page": number}
        if since is not None:
            params["datetime_from"] = since.strftime("%Y-%m-%dT%H:%M:%SZ")
        response = get(source, url, params=params, headers=headers, client=client)
        rows = _results(source, str(response.url), json_body(source, response, "OpenAQ JSON"))
        return rows, number + 1 if len(rows) == limit else number  # a full page: ask for the next one

    records: list[dict[str, Any]] = []
    for rows in paginate(page):
        records.extend(rows)
    return [r for r in records if since is None or (_utc(r["period"]["datetimeFrom"]["utc"]) or since) > since]


def split_by_range(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows within their parameter's plausible range, and the others with a reason."""
    kept, quarantined = [], []
    for row in rows:
        bounds = RANGES.get((row["parameter"], row["units"].lower()))
        if bounds and not bounds[0] <= row["value"] <= bounds[1]:
            quarantined.append(
                {
                    **row,
                    "reason": f"{row['parameter']} {row['value']} {row['units']} outside [{bounds[0]}, {bounds[1]}]",
                }
            )
        else:
            kept.append(row)
    return kept, quarantined


def location_rows(
    source: str,
    base_url: str,
    location: int,
    cursors: Mapping[str, str],
    client: httpx.Client,
    headers: Mapping[str, str],
) -> tuple[list[dict[str, Any]], dict[str, str], int]:
    """New measurements of every sensor of one location: (rows, advanced cursors, duplicates dropped)."""
    rows: list[dict[str, Any]] = []
    new_cursors: dict[str, str] = {}
    seen: set[tuple[int, datetime]] = set()
    duplicates = 0
    for sensor, parameter, units in location_sensors(source, base_url, location, client, headers):
        since = _utc(cursors.get(cursor_key(sensor)))
        for record in sensor_measurements(source, base_url, sensor, since, client, headers):
            start = _utc(record["period"]["datetimeFrom"]["utc"])
            if start is None or record.get("value") is None:
                continue
            if (sensor, start) in seen:
                duplicates += 1
                continue
            seen.add((sensor, start))
            rows.append(
                {
                    "location_id": location,
                    "sensor_id": sensor,
                    "parameter": record["parameter"]["name"] or parameter,
                    "units": record["parameter"]["units"] or units,
                    "value": float(record["value"]),
                    "datetime_from": start,
                    "datetime_to": _utc((record["period"].get("datetimeTo") or {}).get("utc")),
                }
            )
            previous = new_cursors.get(cursor_key(sensor)) or cursors.get(cursor_key(sensor))
            if previous is None or start > (_utc(previous) or start):
                new_cursors[cursor_key(sensor)] = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    return rows, new_cursors, duplicates


def fetch_measurements(
    source: str, base_url: str, locations: tuple[int, ...], cursors: Mapping[str, str], api_key: str | None
) -> FetchResult:
    """New measurements of every sensor of the locations, split into kept and quarantined rows.

    A location whose requests fail for good (a ``HeadwaterError`` once the HTTP layer's
    retries are spent) contributes nothing, neither rows nor cursors: its sensors keep
    their cursors and the next run asks again. It is listed in ``failures`` and the other
    locations load. When every location fails, the first location's error is raised.
    """
    headers = {"X-API-Key": api_key} if api_key else {}
    rows: list[dict[str, Any]] = []
    new_cursors: dict[str, str] = {}
    failures: dict[str, str] = {}
    errors: list[HeadwaterError] = []
    duplicates = 0
    unique = tuple(dict.fromkeys(locations))  # a location listed twice is fetched once
    with make_client() as client:
        for location in unique:
            try:
                found, advanced, dropped = location_rows(source, base_url, location, cursors, client, headers)
            except HeadwaterError as error:
                failures[f"location {location}"] = str(error)
                errors.append(error)
                continue
            rows.extend(found)
            new_cursors.update(advanced)
            duplicates += dropped
    if errors and len(errors) == len(unique):
        raise errors[0]
    kept, quarantined = split_by_range(rows)
    total = len(rows)
    return FetchResult(
        frames={
            "measurements": MEASUREMENTS.frame(kept),
            "measurements_quarantine": QUARANTINE.frame(quarantined),
        },
        rows_rejected=len(quarantined),
        quality_score=round(len(kept) / total, 4) if total else 1.0,
        notes={"state": new_cursors, "duplicates_in_response": duplicates} if new_cursors or duplicates else {},
        failures=failures,
    )


class OpenAqParams(SourceParams):
    """Fetch measurements newer than each sensor's cursor, quarantine out-of-range values, merge the rest.

    A second run fetches only what is newer (``datetime_from`` = the cursor) and adds no
    duplicate: the table is a ReplacingMergeTree on (sensor_id, datetime_from). The
    location set (default: named after the locations, ``seed`` for the configured ones)
    is the partition and names the instance, whose cursors it keeps.
    """

    locations: PositiveInts | None = Field(
        default=None, description="OpenAQ location ids (default HEADWATER_OPENAQ_LOCATIONS)"
    )
    location_set: str | None = Field(default=None, description="name of the location set (default: from the ids)")
    base_url: str | None = Field(default=None, description="API root (default: the public API)")

    @property
    def chosen_locations(self) -> tuple[int, ...]:
        """The locations asked for, else the configured ones."""
        return tuple(self.locations or get_settings().openaq_locations)

    @property
    def set_name(self) -> str:
        """The instance name part: ``location_set``, else derived from the ids."""
        return self.location_set or location_set_name(self.chosen_locations)

    @model_validator(mode="after")
    def _name_the_set(self) -> OpenAqParams:
        self.location_set = self.set_name  # the partition
        return self


def fetch(call: ApiCall[OpenAqParams]) -> FetchResult:
    """The run's batch: every sensor's measurements newer than its cursor."""
    return fetch_measurements(call.label, call.url, call.params.chosen_locations, call.state, call.api_key)


OPENAQ = ApiSource(
    name="openaq",
    title="OpenAQ",
    flow_name="ingest-openaq",
    run_name="openaq {location_set}",
    summary="Ingest new OpenAQ measurements of the configured locations into ClickHouse (openaq.*).",
    database="openaq",
    params=OpenAqParams,
    instance="openaq-{set_name}",
    urls=(UrlParam("base_url", "openaq", DEFAULT_BASE_URL),),
    partition_columns=("location_set",),
    tables={"measurements": MEASUREMENTS, "measurements_quarantine": QUARANTINE},
    data_clock=DataClock("measurements", "datetime_from", timedelta(days=2)),
    fetch=fetch,
    stateful=True,
    api_key_block="openaq_api_key_block",
)
