"""Ingest one SOT daily export (one network, one processing date) into ClickHouse.

Command line (the contract's interface)::

    python -m flows.sot --network ethereum --date 2026-11-22 --base-url http://127.0.0.1:8000/exports

exits 0 when the export was loaded or was already loaded unchanged, 2 with a one-line
reason on stderr when a parameter is wrong (nothing is fetched), and 1 with a one-line
reason when it failed or was skipped because the source's circuit is open.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime

from prefect import flow

from headwater.batch import BatchRequest
from headwater.catchup import scheduled_date
from headwater.cli import run_flow_cli
from headwater.errors import ConfigurationError
from headwater.outcome import RunResult
from headwater.params import EXPORT_SCHEMES, FLOW_TIMEOUT_S, check_one_of, check_positive, check_url, parse_date
from headwater.settings import get_settings
from headwater.sources.sot.contract import SOT
from tasks.download import download_manifest, download_resource
from tasks.pipeline import run_batch


def sot_instance(network: str) -> str:
    """The source instance name of a network, as its deployment is named."""
    return f"sot-{network}"


def export_url(base_url: str, network: str, processing_date: date) -> str:
    """``{base_url}/{network}/{processing_date}`` as the contract lays it out."""
    return f"{base_url.rstrip('/')}/{network}/{processing_date.isoformat()}"


def resolve_base_url(base_url: str | None, label: str = "sot") -> str:
    """The base URL from the parameter, else from settings, checked; fail clearly when neither is set."""
    resolved = base_url or get_settings().sot_base_url
    if not resolved:
        raise ConfigurationError(label, "expected a base URL (--base-url or HEADWATER_SOT_BASE_URL), found none")
    return check_url(label, "base_url", resolved, EXPORT_SCHEMES)


def check_sot_params(network: str, window_days: int, base_url: str | None) -> str:
    """Check a SOT run's parameters before anything is fetched; return the resolved base URL."""
    label = sot_instance(network)
    check_one_of(label, "a network", network, get_settings().sot_networks)
    check_positive(label, "window_days", window_days)
    return resolve_base_url(base_url, label)


def default_processing_date() -> date:
    """The day a deployment run was scheduled for (UTC), else today (UTC).

    A late run caught up after downtime loads the export of the day it was scheduled
    for, not of the day it happens to run.
    """
    scheduled = scheduled_date()
    return (scheduled or datetime.now(UTC)).date()


@flow(
    name="ingest-sot",
    flow_run_name="sot {network} {processing_date}",
    description="Download, verify, validate and load one SOT export into ClickHouse.",
    timeout_seconds=FLOW_TIMEOUT_S,
)
def ingest_sot(
    network: str,
    processing_date: date | None = None,
    window_days: int = 195,
    base_url: str | None = None,
) -> RunResult:
    """Ingest the SOT export of ``network`` for ``processing_date`` (default: the scheduled day, UTC).

    Loads every contract table except the excluded ones into the ``sot`` database,
    replacing that network's partition for that date atomically. An export whose
    manifest equals the last loaded version is recorded ``unchanged`` and loads nothing.
    """
    settings = get_settings()
    root = check_sot_params(network, window_days, base_url)
    day = processing_date or default_processing_date()
    request = BatchRequest(
        source=SOT,
        instance=sot_instance(network),
        partition={"network": network, "processing_date": day},
        constants={"window_days": window_days},
        database=settings.sot_database,
        excluded_tables=frozenset(settings.sot_excluded_tables),
        location=export_url(root, network, day),
    )
    return run_batch(request, download_manifest, download_resource)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m flows.sot", description=__doc__.splitlines()[0])
    parser.add_argument("--network", required=True, help="ethereum, bitcoin or torus")
    parser.add_argument("--date", default=None, help="processing date (YYYY-MM-DD), default today UTC")
    parser.add_argument("--window-days", type=int, default=195)
    parser.add_argument("--base-url", default=None, help="http(s):// or file:// root of the exports")
    args = parser.parse_args(argv)

    def call() -> RunResult:
        day = parse_date(sot_instance(args.network), "--date", args.date) if args.date else None
        return ingest_sot(args.network, day, args.window_days, args.base_url)

    return run_flow_cli(call)


if __name__ == "__main__":
    sys.exit(main())
