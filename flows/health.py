"""Source health: a table (or JSON) of every source instance, the hourly health flow, and the health API.

    python -m flows.health            # aligned table: one row per source instance, deployed ones first
    python -m flows.health --json     # the same report as JSON: overall status and one object per instance
    python -m flows.health --reset sot-ethereum   # close a circuit by hand
    python -m flows.health serve [--host 127.0.0.1] [--port 8765] [--token-block NAME]   # the HTTP API

Each instance has two clocks: when a run last succeeded (``age_s``) and how old the newest
data in the warehouse is (``data_age_s``); its state is ``damaged``, ``never``, ``stale``,
``late``, ``degraded``, ``fresh`` or ``unscheduled``, and the overall status is the worst
state over deployed instances. How each is computed: ``headwater/health.py``; the HTTP
routes: ``headwater/health_api.py``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from fastapi import FastAPI
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.blocks.system import Secret
from rich.console import Console

from blocks.ledger import open_ledger
from blocks.warehouse import ClickHouseWarehouse
from flows.factory import fails_with_reason
from headwater import events
from headwater.cli import parse_command_line, report_error
from headwater.errors import ConfigurationError
from headwater.health import (
    FRESH,
    LATE,
    STALE,
    HealthReport,
    build_health_report,
    health_markdown,
    health_table_text,
    render_health_table,
    reset_circuit,
)
from headwater.health_api import create_app, health_server
from headwater.ledger import Ledger
from headwater.logs import run_logger
from headwater.params import FLOW_TIMEOUT_S
from headwater.reconcile import damaged_instances
from headwater.settings import get_settings
from headwater.sources import registered_sources
from headwater.spec import SourceSpec

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765


def source_databases() -> dict[str, tuple[SourceSpec, str]]:
    """Every registered source by name, with the database it loads into."""
    return {spec.name: (spec, database) for spec, database in registered_sources()}


def warehouse_damage(ledger: Ledger) -> dict[str, list[str]]:
    """Instances whose warehouse state disagrees with the ledger (health shows them ``damaged``)."""
    with ClickHouseWarehouse.from_settings().session() as client:
        return damaged_instances(ledger, client, source_databases(), ledger.instances())


def health_report(now: datetime | None = None) -> HealthReport:
    """The health report of every source instance, from the configured ledger and warehouse."""
    with open_ledger() as ledger, ClickHouseWarehouse.from_settings().session() as client:
        return build_health_report(ledger, client, source_databases(), now)


def health_token(token_block: str | None = None) -> str | None:
    """The API's bearer token: the Secret block ``token_block``, else ``HEADWATER_HEALTH_TOKEN_BLOCK``'s; None: open.

    A named block that does not exist is a ConfigurationError: the API is never served
    open by mistake.
    """
    name = token_block or get_settings().health_token_block
    if not name:
        return None
    try:
        value = Secret.load(name).get()  # type: ignore[union-attr]
    except ValueError:
        raise ConfigurationError("health API", f"expected a Secret block named {name!r}, found none") from None
    return str(value)


def health_app(token_block: str | None = None) -> FastAPI:
    """The health API over :func:`health_report`, guarded by the token of ``token_block`` (:func:`health_token`)."""
    return create_app(health_report, health_token(token_block))


def serve_health(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, token_block: str | None = None) -> None:
    """Serve the health API with uvicorn until interrupted (blocking)."""
    app = health_app(token_block)
    guarded = "bearer token required" if token_block or get_settings().health_token_block else "no token: open"
    run_logger().info("health API on http://%s:%s/health/status (%s)", host, port, guarded)
    health_server(app, host, port).run()


def health_run_name() -> str:
    """A health run's name in the UI: ``source health <now, UTC, to the minute>``."""
    return f"source health {datetime.now(UTC):%Y-%m-%d %H:%M}"


@flow(
    name="source-health",
    flow_run_name=health_run_name,
    description="Check every source's freshness and data age; write the health artifact.",
    timeout_seconds=FLOW_TIMEOUT_S,
)
@fails_with_reason
def report_health() -> dict[str, object]:
    """Compute the health report, publish it as a markdown artifact, and emit stale/recovered events.

    ``headwater.source.stale`` fires when a source turns stale;
    ``headwater.source.recovered`` when a late or stale source is fresh again.
    """
    logger = run_logger()
    report = health_report()
    with open_ledger() as ledger:
        for row in report.sources:
            previous = (ledger.health(row.name) or {}).get("freshness")
            source = row.source or row.name
            if row.state == STALE and previous != STALE:
                events.emit(events.SOURCE_STALE, row.name, source, age_s=row.age_s, cadence_s=row.cadence_s)
                logger.warning("%s is stale (last success %s)", row.name, row.last_success)
            elif row.state == FRESH and previous in (LATE, STALE):
                events.emit(events.SOURCE_RECOVERED, row.name, source, previous=previous)
            if previous != row.state:
                ledger.save_health(row.name, source, freshness=row.state)
    create_markdown_artifact(
        key="source-health",
        markdown=health_markdown(report),
        description=f"Source health at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {report.overall}",
    )
    logger.info("overall health: %s (%s)", report.overall, report.counts)
    return report.model_dump(mode="json")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m flows.health", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("command", nargs="?", choices=["serve"], help="serve: run the read-only health HTTP API")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (overall and sources)")
    parser.add_argument("--reset", metavar="NAME", help="close the circuit of a source instance")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"serve: address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"serve: port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--token-block",
        metavar="NAME",
        help="serve: Secret block holding the bearer token (default HEADWATER_HEALTH_TOKEN_BLOCK; none: open)",
    )
    args = parse_command_line(parser, argv)
    if args.command == "serve":
        try:
            serve_health(args.host, args.port, args.token_block)
        except ConfigurationError as error:
            return report_error(error)
        return 0
    if args.reset:
        with open_ledger() as ledger:
            reset_circuit(ledger, args.reset)
        print(f"{args.reset}: circuit closed")
        return 0
    report = health_report()
    if args.json:
        print(report.model_dump_json(indent=2))
    elif sys.stdout.isatty():
        Console().print(render_health_table(report))
    else:
        print(health_table_text(report), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
