"""Ingest World Bank indicators of one vertical into ClickHouse (``worldbank.indicator_values``).

python -m flows.worldbank --vertical agriculture [--countries BEN,TGO] [--base-url URL]
"""

from __future__ import annotations

import argparse
import sys

from prefect import flow

from headwater.batch import BatchRequest
from headwater.cli import run_flow_cli
from headwater.outcome import RunResult
from headwater.params import FLOW_TIMEOUT_S, check_codes, check_one_of, check_positive, check_url
from headwater.settings import get_settings
from headwater.sources.worldbank import (
    DEFAULT_BASE_URL,
    DEFAULT_COUNTRIES,
    PER_PAGE,
    VERTICALS,
    WORLDBANK,
    fetch_indicators,
)
from tasks.fetch import run_api_batch


@flow(name="ingest-worldbank", flow_run_name="worldbank {vertical}", timeout_seconds=FLOW_TIMEOUT_S)
def ingest_worldbank(
    vertical: str,
    countries: list[str] | None = None,
    indicators: list[str] | None = None,
    base_url: str | None = None,
    per_page: int = PER_PAGE,
) -> RunResult:
    """Fetch every page of the vertical's indicators for the countries and replace its partition.

    The vertical (agriculture, employment, business) is the partition: each run is a full
    snapshot of it, so a rerun on the same responses is ``unchanged`` and adds no rows.
    """
    settings = get_settings()
    label = f"worldbank-{vertical}"
    check_one_of(label, "a vertical", vertical, VERTICALS)
    chosen_countries = check_codes(label, "countries", countries or DEFAULT_COUNTRIES)
    chosen_indicators = check_codes(label, "indicators", indicators or VERTICALS[vertical])
    check_positive(label, "per_page", per_page)
    url = check_url(label, "base_url", base_url or settings.worldbank_base_url or DEFAULT_BASE_URL)
    request = BatchRequest(
        source=WORLDBANK,
        instance=f"worldbank-{vertical}",
        partition={"vertical": vertical},
        database=settings.worldbank_database,
        location=url,
    )
    return run_api_batch(
        request,
        lambda: fetch_indicators(request.label, url, vertical, chosen_countries, chosen_indicators, per_page),
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m flows.worldbank", description=__doc__.splitlines()[0])
    parser.add_argument("--vertical", required=True, choices=sorted(VERTICALS))
    parser.add_argument("--countries", default=None, help="comma-separated ISO3 codes (default BEN)")
    parser.add_argument("--base-url", default=None)
    args = parser.parse_args(argv)
    countries = args.countries.split(",") if args.countries else None
    return run_flow_cli(lambda: ingest_worldbank(args.vertical, countries, base_url=args.base_url))


if __name__ == "__main__":
    sys.exit(main())
