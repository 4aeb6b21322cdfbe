"""The 03:00 UTC retry sweep: re-run only the networks whose export for the day is not loaded.

python -m flows.sot_sweep [--date 2026-11-22] [--base-url URL]
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from prefect import flow

from flows.sot import default_processing_date, ingest_sot, sot_instance
from headwater.errors import HeadwaterError
from headwater.ledger import open_ledger
from headwater.logs import run_logger
from headwater.pipeline import status_of
from headwater.settings import get_settings


def networks_not_loaded(networks: list[str], processing_date: date) -> list[str]:
    """Networks with no loaded version of ``processing_date`` in the ledger."""
    with open_ledger() as ledger:
        return [
            n for n in networks if ledger.current_version(sot_instance(n), f"{n}/{processing_date.isoformat()}") is None
        ]


@flow(
    name="sot-retry-sweep",
    flow_run_name="sot retry sweep {processing_date}",
    description="Re-run the SOT flow for every network whose export of the day is not loaded.",
)
def sot_retry_sweep(
    processing_date: date | None = None,
    networks: list[str] | None = None,
    window_days: int = 195,
    base_url: str | None = None,
) -> dict[str, str]:
    """Run ``ingest_sot`` for each network not yet loaded for the day; fail if any still fails.

    Returns each swept network's status (``loaded``, ``unchanged`` or ``failed``);
    networks already loaded are not touched.
    """
    logger = run_logger()
    day = processing_date or default_processing_date()
    pending = networks_not_loaded(networks or get_settings().sot_networks, day)
    logger.info("networks to retry for %s: %s", day, ", ".join(pending) or "none")
    statuses: dict[str, str] = {}
    errors: list[str] = []
    for network in pending:
        try:
            statuses[network] = status_of(ingest_sot(network, day, window_days, base_url))
        except HeadwaterError as error:
            statuses[network] = "failed"
            errors.append(str(error))
    if errors:
        raise RuntimeError("; ".join(errors))
    return statuses


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m flows.sot_sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--date", type=date.fromisoformat, default=None)
    parser.add_argument("--base-url", default=None)
    args = parser.parse_args(argv)
    try:
        statuses = sot_retry_sweep(args.date, base_url=args.base_url)
    except Exception as error:  # one-line reason; the details are in the logs
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(statuses)
    return 0


if __name__ == "__main__":
    sys.exit(main())
