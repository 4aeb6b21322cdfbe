"""The 03:00 UTC retry sweep: re-run only the networks whose export for the day is not loaded.

python -m flows.sot_sweep [--date 2026-11-22] [--base-url URL]
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from prefect import flow
from prefect.runtime import flow_run

from blocks.ledger import open_ledger
from blocks.warehouse import ClickHouseWarehouse
from flows.factory import fails_with_reason
from flows.sot import ingest_sot
from headwater.batch import declared_run
from headwater.cli import local_runs, parse_command_line, report_error
from headwater.errors import HeadwaterError
from headwater.logs import run_logger
from headwater.outcome import status_of
from headwater.params import FLOW_TIMEOUT_S, parse_date
from headwater.reconcile import loaded_version_problems
from headwater.settings import get_settings
from headwater.sources.sot.contract import SOT, default_processing_date


def networks_not_loaded(networks: list[str], processing_date: date) -> list[str]:
    """Networks whose export of ``processing_date`` is not loaded.

    Not loaded: no version in the ledger, or a version the warehouse does not hold
    exactly (the warehouse is the truth).
    """
    settings = get_settings()
    instances = {n: SOT.instance.format(network=n) for n in networks}
    with open_ledger() as ledger:
        versions = {n: ledger.current_version(instances[n], f"{n}/{processing_date.isoformat()}") for n in networks}
    loaded = {n: v for n, v in versions.items() if v is not None}
    damaged: dict[str, list[str]] = {}
    if loaded:
        with ClickHouseWarehouse.from_settings().session() as client:
            for network, version in loaded.items():
                partition = {"network": network, "processing_date": processing_date}
                problems = loaded_version_problems(client, SOT, SOT.database_in(settings), partition, version)
                if problems:
                    damaged[network] = problems
    for network, problems in damaged.items():
        run_logger().warning("%s: the ledger says loaded, the warehouse disagrees: %s", network, "; ".join(problems))
    return [n for n in networks if n not in loaded or n in damaged]


def sweep_run_name() -> str:
    """A sweep's name in the UI: ``sot retry sweep <day>``, the default day when none is given."""
    day = flow_run.parameters.get("processing_date") or default_processing_date()
    return f"sot retry sweep {day}"


@flow(
    name="sot-retry-sweep",
    flow_run_name=sweep_run_name,
    description="Re-run the SOT flow for every network whose export of the day is not loaded.",
    timeout_seconds=FLOW_TIMEOUT_S,
)
@fails_with_reason
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
    settings = get_settings()
    day = processing_date or default_processing_date()
    chosen = networks or settings.sot_networks
    for network in chosen:  # every run's parameters are checked before anything is read or fetched
        declared_run(
            SOT,
            {"network": network, "processing_date": day, "window_days": window_days, "base_url": base_url},
            settings,
        )
    pending = networks_not_loaded(chosen, day)
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
        raise HeadwaterError(f"sot retry sweep {day}", f"{len(errors)} of {len(pending)} failed: {'; '.join(errors)}")
    return statuses


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m flows.sot_sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--date", default=None, help="processing date (YYYY-MM-DD), default today UTC")
    parser.add_argument("--base-url", default=None)
    args = parse_command_line(parser, argv)
    try:
        day = parse_date("sot", "--date", args.date) if args.date else None
        with local_runs():
            statuses = sot_retry_sweep(day, base_url=args.base_url)
    except Exception as error:  # one-line reason; the details are in the logs
        return report_error(error)
    print(statuses)
    return 0


if __name__ == "__main__":
    sys.exit(main())
