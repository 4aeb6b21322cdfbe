"""Ingest FAOSTAT crops and livestock production of one area into ClickHouse (``faostat.production``).

python -m flows.faostat [--area 53] [--elements 2312,2413,2510] [--items CODES] [--years 2020,2021] [--base-url URL]
"""

from __future__ import annotations

import argparse
import sys

from prefect import flow

from headwater.batch import BatchRequest
from headwater.cli import run_flow_cli
from headwater.errors import ConfigurationError
from headwater.outcome import RunResult
from headwater.params import FLOW_TIMEOUT_S, check_codes, check_positive_ints, check_url, parse_positive_ints
from headwater.settings import get_settings
from headwater.sources.faostat import (
    DEFAULT_AREA,
    DEFAULT_BASE_URL,
    DEFAULT_ELEMENTS,
    DOMAIN,
    FAOSTAT,
    fetch_production,
)
from tasks.fetch import run_api_batch

INSTANCE = f"faostat-{DOMAIN.lower()}"


@flow(name="ingest-faostat", flow_run_name="faostat qcl area {area}", timeout_seconds=FLOW_TIMEOUT_S)
def ingest_faostat(
    area: str = DEFAULT_AREA,
    elements: list[str] | None = None,
    items: list[str] | None = None,
    years: list[int] | None = None,
    base_url: str | None = None,
) -> RunResult:
    """Download one area's QCL production CSV and replace its partition.

    ``area`` is a FAOSTAT area code (``53`` Benin, ``100`` India); with the domain it is
    the partition, so each run is a full snapshot of that area (for the elements, items
    and years asked for) and a rerun on the same response is ``unchanged``. No items or
    years means all of them.
    """
    settings = get_settings()
    if not area.strip() or "," in area:
        raise ConfigurationError(INSTANCE, f"expected one FAOSTAT area code, found {area!r}")
    chosen_elements = check_codes(INSTANCE, "elements", elements or DEFAULT_ELEMENTS)
    chosen_items = check_codes(INSTANCE, "items", items) if items else ()
    chosen_years = check_positive_ints(INSTANCE, "years", years) if years else ()
    url = check_url(INSTANCE, "base_url", base_url or settings.faostat_base_url or DEFAULT_BASE_URL)
    request = BatchRequest(
        source=FAOSTAT,
        instance=INSTANCE,
        partition={"domain_code": DOMAIN, "requested_area": area},
        database=settings.faostat_database,
        location=url,
    )
    return run_api_batch(
        request,
        lambda: fetch_production(request.label, url, area, chosen_elements, chosen_items, chosen_years),
    )


def _codes(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m flows.faostat", description=__doc__.splitlines()[0])
    parser.add_argument("--area", default=DEFAULT_AREA, help=f"FAOSTAT area code (default {DEFAULT_AREA}, Benin)")
    parser.add_argument("--elements", default=None, help="comma-separated element codes (default 2312,2413,2510)")
    parser.add_argument("--items", default=None, help="comma-separated item codes (default all)")
    parser.add_argument("--years", default=None, help="comma-separated years (default all)")
    parser.add_argument("--base-url", default=None)
    args = parser.parse_args(argv)
    return run_flow_cli(
        lambda: ingest_faostat(
            args.area,
            _codes(args.elements),
            _codes(args.items),
            parse_positive_ints(INSTANCE, "--years", args.years) if args.years else None,
            base_url=args.base_url,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
