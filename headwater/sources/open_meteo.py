"""Open-Meteo forecast API: current conditions and the hourly forecast of a set of regions.

One request per region::

    GET {base}/v1/forecast?latitude=-5.7083&longitude=-78.8083
        &current=temperature_2m,relative_humidity_2m,…&hourly=temperature_2m,…
        &timezone=UTC&forecast_hours=48

answers one JSON object (no pages)::

    {"latitude", "longitude",          # the model grid cell used, not the point asked for
     "elevation", "utc_offset_seconds", "timezone", "generationtime_ms",
     "current_units": {"time": "iso8601", "interval": "seconds", "temperature_2m": "°C", …},
     "current": {"time": "2026-09-17T18:00", "interval": 900, "temperature_2m": 18.6, …},
     "hourly_units": {…},
     "hourly": {"time": ["2026-09-17T18:00", …], "temperature_2m": [18.6, …], …}}

plus ``minutely_15``/``daily`` blocks when those are asked for (they are not; if present
they are ignored). Times are local times without an offset in the requested timezone;
UTC is requested, and they are shifted by ``utc_offset_seconds`` anyway. Values may be
null. ``current`` is the model's value for the 15-minute ``interval`` ending at ``time``.
The API also takes comma-separated coordinate lists and then answers a JSON list; that
form is not used (one region, one request, one object).

The tables assume the API's default units (°C, %, mm, hPa, km/h, W/m²); the response's
``*_units`` are checked against them, so a proxy or a future default answering °F fails
with FetchError instead of loading Fahrenheit as Celsius.

A bad request answers HTTP 400 with ``{"error": true, "reason": "…"}``, whose start
``headwater.http`` puts into the FetchError; the same envelope arriving with HTTP 200 is
turned into a FetchError with its ``reason`` here.

Partition: ``region_set``, the name of the configured list of regions (default
``peru-coffee``). A forecast run supersedes the previous forecast, so each run is a full
snapshot of the set: both tables' partition is replaced, and a rerun on the same
responses is ``unchanged``. ``weather_current`` therefore holds the latest reading per
region, not a history: readings do change every run, but accumulating them would need a
partition per run (``region_set`` plus the run's hour), which the snapshot tables cannot
share, plus retention; Open-Meteo's own history (``past_days`` on the hourly variables,
or its archive API) is the better source of past observations. A different region list
under the same name replaces that set's snapshot; under a new name it gets its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

import pandera.polars as pa
import polars as pl
from pydantic import Field, field_validator

from headwater.bodies import json_body
from headwater.errors import FetchError
from headwater.http import get, make_client
from headwater.logs import run_logger
from headwater.spec import ApiCall, ApiSource, SourceParams, UrlParam
from headwater.tables import TableSpec

DEFAULT_BASE_URL = "https://api.open-meteo.com"
DEFAULT_REGION_SET = "peru-coffee"
DEFAULT_FORECAST_HOURS = 48
MAX_FORECAST_HOURS = 16 * 24  # the forecast API's longest horizon (16 days)
REGION_SET = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Region:
    """A named point whose weather is fetched (one request each)."""

    name: str
    latitude: float
    longitude: float


# Peru's main coffee-growing provinces, each by the town at the centre of its coffee area
# (Open-Meteo snaps a point to its model grid, a few km wide, so town centres suffice).
DEFAULT_REGIONS: tuple[Region, ...] = (
    Region("Cajamarca (Jaén)", -5.7083, -78.8083),
    Region("Amazonas (Rodríguez de Mendoza)", -6.3967, -77.4839),
    Region("San Martín (Moyobamba)", -6.0342, -76.9717),
    Region("Pasco (Villa Rica)", -10.7392, -75.2689),
    Region("Junín (Chanchamayo)", -11.0547, -75.3286),
    Region("Cusco (La Convención)", -12.8631, -72.6928),  # Quillabamba
    Region("Puno (Sandia)", -14.2183, -69.1533),  # San Juan del Oro, Tambopata valley
)

# Variables requested, in request order, with the unit each column assumes (the API default).
CURRENT_VARIABLES: dict[str, str] = {
    "temperature_2m": "°C",
    "relative_humidity_2m": "%",
    "apparent_temperature": "°C",
    "dew_point_2m": "°C",
    "precipitation": "mm",
    "rain": "mm",
    "showers": "mm",
    "weather_code": "wmo code",
    "cloud_cover": "%",
    "pressure_msl": "hPa",
    "surface_pressure": "hPa",
    "wind_speed_10m": "km/h",
    "wind_direction_10m": "°",
    "wind_gusts_10m": "km/h",
    "shortwave_radiation": "W/m²",
}
HOURLY_VARIABLES: dict[str, str] = {
    "temperature_2m": "°C",
    "relative_humidity_2m": "%",
    "precipitation_probability": "%",
    "precipitation": "mm",
}
INTEGER_VARIABLES = frozenset({"weather_code"})

# The models below spell their checks out instead of sharing Field helpers: validation
# results are cached on the model classes' source code, so every range must be in it.


class WeatherCurrent(pa.DataFrameModel):
    """``weather.weather_current``: the latest reading per region (°C, %, mm, hPa, km/h, W/m²)."""

    region_set: str = pa.Field(str_matches=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
    region: str = pa.Field(str_length={"min_value": 1})
    latitude: float = pa.Field(ge=-90, le=90)  # as configured
    longitude: float = pa.Field(ge=-180, le=180)
    grid_latitude: float = pa.Field(ge=-90, le=90)  # the grid cell the API used
    grid_longitude: float = pa.Field(ge=-180, le=180)
    elevation: float = pa.Field(ge=-500, le=9000, nullable=True)  # metres
    observed_at: Annotated[pl.Datetime, "ms", "UTC"]  # end of the interval
    interval_s: int = pa.Field(ge=0)
    temperature_2m: float = pa.Field(ge=-50, le=60, nullable=True)
    relative_humidity_2m: float = pa.Field(ge=0, le=100, nullable=True)
    apparent_temperature: float = pa.Field(ge=-80, le=80, nullable=True)
    dew_point_2m: float = pa.Field(ge=-80, le=60, nullable=True)
    precipitation: float = pa.Field(ge=0, nullable=True)
    rain: float = pa.Field(ge=0, nullable=True)
    showers: float = pa.Field(ge=0, nullable=True)
    weather_code: int = pa.Field(ge=0, le=99, nullable=True)  # WMO code
    cloud_cover: float = pa.Field(ge=0, le=100, nullable=True)
    pressure_msl: float = pa.Field(ge=800, le=1100, nullable=True)
    surface_pressure: float = pa.Field(ge=300, le=1100, nullable=True)
    wind_speed_10m: float = pa.Field(ge=0, le=500, nullable=True)
    wind_direction_10m: float = pa.Field(ge=0, le=360, nullable=True)
    wind_gusts_10m: float = pa.Field(ge=0, le=500, nullable=True)
    shortwave_radiation: float = pa.Field(ge=0, le=1500, nullable=True)

    class Config:
        strict = True
        coerce = True


class WeatherHourly(pa.DataFrameModel):
    """``weather.weather_hourly``: the hourly forecast per region from the run's current hour."""

    region_set: str = pa.Field(str_matches=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
    region: str = pa.Field(str_length={"min_value": 1})
    time: Annotated[pl.Datetime, "ms", "UTC"]  # start of the hour
    temperature_2m: float = pa.Field(ge=-50, le=60, nullable=True)
    relative_humidity_2m: float = pa.Field(ge=0, le=100, nullable=True)
    precipitation_probability: float = pa.Field(ge=0, le=100, nullable=True)
    precipitation: float = pa.Field(ge=0, nullable=True)  # mm over the preceding hour

    class Config:
        strict = True
        coerce = True


WEATHER_CURRENT = TableSpec("weather_current", WeatherCurrent, key=("region", "observed_at"))
WEATHER_HOURLY = TableSpec("weather_hourly", WeatherHourly, key=("region", "time"))


def parse_regions(regions: Sequence[Mapping[str, Any]] | None) -> tuple[Region, ...]:
    """Regions from ``[{name, latitude, longitude}, …]`` (default: ``DEFAULT_REGIONS``).

    Names must be unique (they are the tables' key) and coordinates in range; anything
    else raises ValueError before any request is sent.
    """
    if regions is None:
        return DEFAULT_REGIONS
    parsed: list[Region] = []
    for entry in regions:
        if not isinstance(entry, Mapping) or set(entry) != {"name", "latitude", "longitude"}:
            raise ValueError(f"expected regions as {{name, latitude, longitude}}, found {entry!r}")
        name, latitude, longitude = entry["name"], entry["latitude"], entry["longitude"]
        numbers_ok = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (latitude, longitude))
        if not (isinstance(name, str) and name.strip()) or not numbers_ok:
            raise ValueError(f"expected a non-empty name and numeric coordinates, found {entry!r}")
        if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
            raise ValueError(f"expected latitude in -90..90 and longitude in -180..180, found {entry!r}")
        parsed.append(Region(name.strip(), float(latitude), float(longitude)))
    if not parsed:
        raise ValueError("expected at least one region, found none")
    names = [r.name for r in parsed]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"expected unique region names, found {', '.join(duplicates)} more than once")
    return tuple(parsed)


def coordinate(value: float) -> str:
    """A coordinate as sent: plain decimal notation, at most 6 decimals (``-0.0005``, never ``-5e-04``)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def forecast_url(base_url: str, region: Region, forecast_hours: int) -> str:
    """The forecast URL of one region (variable lists comma-joined with literal commas)."""
    query = {
        "latitude": coordinate(region.latitude),
        "longitude": coordinate(region.longitude),
        "current": ",".join(CURRENT_VARIABLES),
        "hourly": ",".join(HOURLY_VARIABLES),
        "timezone": "UTC",
        "forecast_hours": str(forecast_hours),
    }
    return f"{base_url.rstrip('/')}/v1/forecast?{urlencode(query, safe=',')}"


def _timestamp(source: str, url: str, value: Any, offset: timedelta) -> datetime:
    """An API time (local ISO 8601 without offset, or unix seconds) as a UTC datetime."""
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError) as error:
        raise FetchError(source, url, f"expected an ISO 8601 time, found {value!r}") from error
    if parsed.tzinfo is not None:
        return parsed.astimezone(UTC)
    return (parsed - offset).replace(tzinfo=UTC)


def _number(source: str, url: str, where: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FetchError(source, url, f"expected a number or null in {where}, found {value!r}")
    return float(value)


def _block(source: str, url: str, body: dict[str, Any], name: str, variables: Mapping[str, str]) -> dict[str, Any]:
    """The ``current`` or ``hourly`` block, after checking it has every variable in the expected unit."""
    block, units = body.get(name), body.get(f"{name}_units")
    if not isinstance(block, dict) or not isinstance(units, dict):
        raise FetchError(source, url, f"expected '{name}' and '{name}_units' objects, found keys {sorted(body)}")
    missing = [v for v in ("time", *variables) if v not in block]
    if missing:
        raise FetchError(source, url, f"expected {name} variables {missing}, found {sorted(block)}")
    wrong = {v: units.get(v) for v, unit in variables.items() if units.get(v) != unit}
    if wrong:
        expected = {v: variables[v] for v in wrong}
        raise FetchError(source, url, f"expected {name} units {expected}, found {wrong}")
    return block


def parse_forecast(
    source: str, url: str, region_set: str, region: Region, body: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``weather_current`` row and the ``weather_hourly`` rows of one region's response."""
    if isinstance(body, dict) and body.get("error"):
        raise FetchError(source, url, f"Open-Meteo API error: {body.get('reason', body)}")
    if not isinstance(body, dict):
        raise FetchError(source, url, f"expected one location's forecast object, found {str(body)[:200]!r}")
    offset_s = body.get("utc_offset_seconds", 0)
    if not isinstance(offset_s, int) or isinstance(offset_s, bool):
        raise FetchError(source, url, f"expected integer utc_offset_seconds, found {offset_s!r}")
    offset = timedelta(seconds=offset_s)
    current = _block(source, url, body, "current", CURRENT_VARIABLES)
    hourly = _block(source, url, body, "hourly", HOURLY_VARIABLES)

    grid = [_number(source, url, "the location", body.get(k)) for k in ("latitude", "longitude")]
    if grid[0] is None or grid[1] is None:
        raise FetchError(source, url, f"expected the grid cell's latitude and longitude, found {grid}")
    interval = current.get("interval")
    if not isinstance(interval, int) or isinstance(interval, bool):
        raise FetchError(source, url, f"expected an integer current.interval (seconds), found {interval!r}")
    row: dict[str, Any] = {
        "region_set": region_set,
        "region": region.name,
        "latitude": region.latitude,
        "longitude": region.longitude,
        "grid_latitude": grid[0],
        "grid_longitude": grid[1],
        "elevation": _number(source, url, "elevation", body.get("elevation")),
        "observed_at": _timestamp(source, url, current["time"], offset),
        "interval_s": interval,
    }
    for name in CURRENT_VARIABLES:
        value = _number(source, url, f"current.{name}", current[name])
        if name in INTEGER_VARIABLES and value is not None:
            if not value.is_integer():
                raise FetchError(source, url, f"expected an integer current.{name}, found {current[name]!r}")
            row[name] = int(value)
        else:
            row[name] = value

    times = hourly["time"]
    if not isinstance(times, list):
        raise FetchError(source, url, f"expected hourly.time as a list, found {str(times)[:200]!r}")
    ragged = {v: len(hourly[v]) if isinstance(hourly[v], list) else None for v in HOURLY_VARIABLES}
    ragged = {v: n for v, n in ragged.items() if n != len(times)}
    if ragged:
        raise FetchError(source, url, f"expected {len(times)} hourly values per variable (hourly.time), found {ragged}")
    columns = {v: [_number(source, url, f"hourly.{v}", x) for x in hourly[v]] for v in HOURLY_VARIABLES}
    rows = [
        {
            "region_set": region_set,
            "region": region.name,
            "time": _timestamp(source, url, t, offset),
            **{v: columns[v][i] for v in HOURLY_VARIABLES},
        }
        for i, t in enumerate(times)
    ]
    return row, rows


def to_frames(current: list[dict[str, Any]], hourly: list[dict[str, Any]]) -> dict[str, pl.DataFrame]:
    """The rows of every region as the two tables' frames."""
    return {"weather_current": WEATHER_CURRENT.frame(current), "weather_hourly": WEATHER_HOURLY.frame(hourly)}


def fetch_forecasts(
    source: str,
    base_url: str,
    region_set: str,
    regions: Sequence[Region],
    forecast_hours: int = DEFAULT_FORECAST_HOURS,
) -> dict[str, pl.DataFrame]:
    """One forecast request per region, as ``{"weather_current": …, "weather_hourly": …}``."""
    logger = run_logger()
    current: list[dict[str, Any]] = []
    hourly: list[dict[str, Any]] = []
    with make_client() as client:
        for region in regions:
            response = get(source, forecast_url(base_url, region, forecast_hours), client=client)
            url = str(response.url)
            row, rows = parse_forecast(source, url, region_set, region, json_body(source, response, "Open-Meteo JSON"))
            current.append(row)
            hourly.extend(rows)
    logger.info("%s: %s region(s), %s hourly row(s)", source, len(current), len(hourly))
    return to_frames(current, hourly)


class OpenMeteoParams(SourceParams):
    """Fetch current conditions and the hourly forecast of every region and replace the set's partition.

    ``regions`` (``[{name, latitude, longitude}, …]``) defaults to Peru's coffee regions
    (``DEFAULT_REGIONS``); ``region_set`` names the list and is the partition of both
    ``weather_current`` and ``weather_hourly``. A new forecast supersedes the last one,
    so each run is a full snapshot of the set (the latest reading and the next
    ``forecast_hours`` hours per region), and a rerun on the same responses is
    ``unchanged`` and adds no rows. A different list under the same name replaces that
    set's snapshot; give a new list a new name to keep both.
    """

    region_set: str = Field(default=DEFAULT_REGION_SET, description="name of the region list (the partition)")
    regions: list[dict[str, Any]] | None = Field(
        default=None,
        description='the regions, [{"name", "latitude", "longitude"}, …] (default: Peru\'s coffee regions)',
    )
    base_url: str | None = Field(default=None, description="API root (default: the public API)")
    forecast_hours: int = Field(default=DEFAULT_FORECAST_HOURS, description="hours of forecast per region")

    @field_validator("region_set")
    @classmethod
    def _region_set_name(cls, value: str) -> str:
        if not REGION_SET.match(value):
            raise ValueError(f"expected a region set name like peru-coffee (a-z, 0-9, '-'), found {value!r}")
        return value

    @field_validator("regions", mode="before")
    @classmethod
    def _regions(cls, value: Any) -> Any:
        parse_regions(value)
        return value

    @field_validator("forecast_hours")
    @classmethod
    def _hours(cls, value: int) -> int:
        if not 1 <= value <= MAX_FORECAST_HOURS:
            raise ValueError(f"expected forecast_hours in 1..{MAX_FORECAST_HOURS}, found {value}")
        return value


def fetch(call: ApiCall[OpenMeteoParams]) -> dict[str, pl.DataFrame]:
    """The run's batch: one forecast request per region of the set."""
    p = call.params
    return fetch_forecasts(call.label, call.url, p.region_set, parse_regions(p.regions), p.forecast_hours)


OPEN_METEO = ApiSource(
    name="open_meteo",
    title="Open-Meteo",
    flow_name="ingest-open-meteo",
    run_name="open-meteo {region_set}",
    summary="Ingest Open-Meteo current weather and hourly forecasts of a region set into ClickHouse (weather.*).",
    database="weather",
    params=OpenMeteoParams,
    instance="open-meteo-{region_set}",
    urls=(UrlParam("base_url", "open_meteo", DEFAULT_BASE_URL, rate_limit=5.0),),
    partition_columns=("region_set",),
    tables={"weather_current": WEATHER_CURRENT, "weather_hourly": WEATHER_HOURLY},
    fetch=fetch,
)
