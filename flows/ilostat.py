"""Ingest one ILOSTAT dataset for a list of countries into ClickHouse (``ilostat.indicator_values``).

python -m flows.ilostat --indicator UNE_DEAP_SEX_AGE_RT_A [--ref-areas BEN,TGO] [--base-url URL]
"""

from __future__ import annotations

import argparse
import sys

from prefect import flow

from headwater.batch import BatchRequest
from headwater.cli import run_flow_cli
from headwater.errors import ConfigurationError
from headwater.outcome import RunResult
from headwater.params import FLOW_TIMEOUT_S, check_url
from headwater.settings import get_settings
from headwater.sources.ilostat import (
    DATASET_ID,
    DEFAULT_BASE_URL,
    DEFAULT_REF_AREAS,
    EMPLOYMENT_INDICATORS,
    ILOSTAT,
    REF_AREA,
    fetch_indicator,
    instance_name,
)
from tasks.fetch import run_api_batch


@flow(name="ingest-ilostat", flow_run_name="ilostat {indicator}", timeout_seconds=FLOW_TIMEOUT_S)
def ingest_ilostat(
    indicator: str,
    ref_areas: list[str] | None = None,
    base_url: str | None = None,
) -> RunResult:
    """Download one dataset's code-style CSV for the reference areas and replace its partition.

    ``indicator`` is the rplumber dataset id with its frequency (``UNE_DEAP_SEX_AGE_RT_A``;
    the employment vertical's defaults are in ``EMPLOYMENT_INDICATORS``). It is the
    partition: each run is a full snapshot of it for the areas asked for (default BEN),
    so a rerun on the same response is ``unchanged`` and adds no rows.
    """
    settings = get_settings()
    if not DATASET_ID.match(indicator):
        raise ConfigurationError("ilostat", f"expected a dataset id like UNE_DEAP_SEX_AGE_RT_A, found {indicator!r}")
    instance = instance_name(indicator)
    areas = tuple(a.strip().upper() for a in (ref_areas or DEFAULT_REF_AREAS) if a.strip())
    bad = [a for a in areas if not REF_AREA.match(a)]
    if bad or not areas:
        raise ConfigurationError(instance, f"expected reference area codes like BEN or X01, found {bad or ref_areas!r}")
    url = check_url(instance, "base_url", base_url or settings.ilostat_base_url or DEFAULT_BASE_URL)
    request = BatchRequest(
        source=ILOSTAT,
        instance=instance,
        partition={"dataset_id": indicator},
        database=settings.ilostat_database,
        location=url,
    )
    return run_api_batch(request, lambda: fetch_indicator(request.label, url, indicator, areas))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m flows.ilostat", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--indicator", required=True, help=f"rplumber dataset id, e.g. {', '.join(EMPLOYMENT_INDICATORS)}"
    )
    parser.add_argument("--ref-areas", default=None, help="comma-separated ILOSTAT area codes (default BEN)")
    parser.add_argument("--base-url", default=None)
    args = parser.parse_args(argv)
    ref_areas = args.ref_areas.split(",") if args.ref_areas else None
    return run_flow_cli(lambda: ingest_ilostat(args.indicator, ref_areas, base_url=args.base_url))


if __name__ == "__main__":
    sys.exit(main())
