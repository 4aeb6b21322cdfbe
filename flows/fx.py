"""Ingest the daily euro FX reference rates into ClickHouse (``markets.rates``) via ECB → Frankfurter → open.er-api.

python -m flows.fx [--base EUR] [--ecb-url URL] [--frankfurter-url URL] [--erapi-url URL]
"""

from __future__ import annotations

import argparse
import sys

from prefect import flow

from headwater.batch import BatchRequest
from headwater.cli import run_flow_cli
from headwater.errors import ConfigurationError
from headwater.outcome import RunResult
from headwater.params import FLOW_TIMEOUT_S, check_non_negative, check_url
from headwater.settings import get_settings
from headwater.sources.fx import (
    CURRENCY,
    DEFAULT_BASE,
    ECB_BASE_URL,
    ERAPI_BASE_URL,
    FRANKFURTER_BASE_URL,
    FX,
    fetch_rates,
)
from tasks.fetch import run_api_batch


def instance_name(base: str) -> str:
    """The instance (and deployment) name: ``fx-rates`` for the EUR base, ``fx-rates-<base>`` otherwise."""
    return "fx-rates" if base == DEFAULT_BASE else f"fx-rates-{base.lower()}"


@flow(name="ingest-fx", flow_run_name="fx {base}", timeout_seconds=FLOW_TIMEOUT_S)
def ingest_fx(
    base: str = DEFAULT_BASE,
    ecb_url: str | None = None,
    frankfurter_url: str | None = None,
    erapi_url: str | None = None,
    tolerance: float | None = None,
) -> RunResult:
    """Fetch the latest reference rates from the first provider that answers and merge them into the base's history.

    The chain (ECB, then Frankfurter, then open.er-api) records every failed provider
    and compares the winner with the next provider that answers; both land in the
    run's notes (META.json and the ledger). ``base`` is the partition.
    """
    settings = get_settings()
    if not CURRENCY.match(base):
        raise ConfigurationError("fx", f"expected a 3-letter currency code as base, found {base!r}")
    label = instance_name(base)
    urls = {
        "ecb": check_url(label, "ecb_url", ecb_url or settings.ecb_base_url or ECB_BASE_URL),
        "frankfurter": check_url(
            label, "frankfurter_url", frankfurter_url or settings.frankfurter_base_url or FRANKFURTER_BASE_URL
        ),
        "erapi": check_url(label, "erapi_url", erapi_url or settings.erapi_base_url or ERAPI_BASE_URL),
    }
    chosen_tolerance = check_non_negative(
        label, "tolerance", settings.provider_disagreement_tolerance if tolerance is None else tolerance
    )
    request = BatchRequest(
        source=FX,
        instance=instance_name(base),
        partition={"base": base},
        database=settings.fx_database,
        location=urls["ecb"],
    )
    return run_api_batch(
        request,
        lambda: fetch_rates(request.label, urls, tolerance=chosen_tolerance, base=base, instance=request.instance),
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m flows.fx", description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=DEFAULT_BASE)
    parser.add_argument("--ecb-url", default=None)
    parser.add_argument("--frankfurter-url", default=None)
    parser.add_argument("--erapi-url", default=None)
    args = parser.parse_args(argv)
    return run_flow_cli(
        lambda: ingest_fx(
            args.base, ecb_url=args.ecb_url, frankfurter_url=args.frankfurter_url, erapi_url=args.erapi_url
        )
    )


if __name__ == "__main__":
    sys.exit(main())
