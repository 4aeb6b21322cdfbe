"""Ingest Open-Meteo current weather and hourly forecasts of a region set into ClickHouse (``weather.*``).

python -m flows.open_meteo [--region-set peru-coffee] [--regions JSON] [--forecast-hours 48] [--base-url URL]

``--regions`` is a JSON list such as ``[{"name": "Greenwich", "latitude": 51.4769,
"longitude": -0.0005}]``; without it the Peruvian coffee regions are fetched.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from prefect import flow

from headwater.batch import BatchRequest
from headwater.cli import run_flow_cli
from headwater.errors import ConfigurationError
from headwater.outcome import RunResult
from headwater.params import FLOW_TIMEOUT_S, check_url
from headwater.settings import get_settings
from headwater.sources.open_meteo import (
    DEFAULT_BASE_URL,
    DEFAULT_FORECAST_HOURS,
    DEFAULT_REGION_SET,
    MAX_FORECAST_HOURS,
    OPEN_METEO,
    REGION_SET,
    fetch_forecasts,
    instance_name,
    parse_regions,
)
from tasks.fetch import run_api_batch


@flow(name="ingest-open-meteo", flow_run_name="open-meteo {region_set}", timeout_seconds=FLOW_TIMEOUT_S)
def ingest_open_meteo(
    region_set: str = DEFAULT_REGION_SET,
    regions: list[dict[str, Any]] | None = None,
    base_url: str | None = None,
    forecast_hours: int = DEFAULT_FORECAST_HOURS,
) -> RunResult:
    """Fetch current conditions and the hourly forecast of every region and replace the set's partition.

    ``regions`` (``[{name, latitude, longitude}, …]``) defaults to Peru's coffee regions
    (``DEFAULT_REGIONS``); ``region_set`` names the list and is the partition of both
    ``weather_current`` and ``weather_hourly``. A new forecast supersedes the last one,
    so each run is a full snapshot of the set (the latest reading and the next
    ``forecast_hours`` hours per region), and a rerun on the same responses is
    ``unchanged`` and adds no rows. A different list under the same name replaces that
    set's snapshot; give a new list a new name to keep both.
    """
    settings = get_settings()
    if not REGION_SET.match(region_set):
        raise ConfigurationError(
            "open-meteo", f"expected a region set name like peru-coffee (a-z, 0-9, '-'), found {region_set!r}"
        )
    instance = instance_name(region_set)
    chosen = parse_regions(instance, regions)
    if not 1 <= forecast_hours <= MAX_FORECAST_HOURS:
        raise ConfigurationError(
            instance, f"expected forecast_hours in 1..{MAX_FORECAST_HOURS}, found {forecast_hours}"
        )
    url = check_url(instance, "base_url", base_url or settings.open_meteo_base_url or DEFAULT_BASE_URL)
    request = BatchRequest(
        source=OPEN_METEO,
        instance=instance,
        partition={"region_set": region_set},
        database=settings.open_meteo_database,
        location=url,
    )
    return run_api_batch(request, lambda: fetch_forecasts(request.label, url, region_set, chosen, forecast_hours))


def regions_argument(text: str | None) -> list[dict[str, Any]] | None:
    """The ``--regions`` JSON list; ConfigurationError when it is not a JSON list."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as error:
        raise ConfigurationError("open-meteo", f"expected --regions as a JSON list, found {text[:200]!r}") from error
    if not isinstance(value, list):
        raise ConfigurationError("open-meteo", f"expected --regions as a JSON list, found {text[:200]!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m flows.open_meteo", description=__doc__.splitlines()[0])
    parser.add_argument("--region-set", default=DEFAULT_REGION_SET, help="name of the region list (the partition)")
    parser.add_argument("--regions", default=None, help='JSON list of {"name", "latitude", "longitude"}')
    parser.add_argument("--forecast-hours", type=int, default=DEFAULT_FORECAST_HOURS)
    parser.add_argument("--base-url", default=None)
    args = parser.parse_args(argv)
    return run_flow_cli(
        lambda: ingest_open_meteo(args.region_set, regions_argument(args.regions), args.base_url, args.forecast_hours)
    )


if __name__ == "__main__":
    sys.exit(main())
