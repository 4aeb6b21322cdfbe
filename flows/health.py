"""Source health: a table (or JSON) of every source instance, and the hourly health flow.

    python -m flows.health            # table: one row per source instance
    python -m flows.health --json     # the same rows as a JSON list of objects
    python -m flows.health --reset sot-ethereum   # close a circuit by hand

Fields: name, state (fresh / late / stale / never), circuit (closed / open / half_open),
reliability, consecutive_failures, last_success, age_s, cadence_s, last_status,
last_rows, last_bytes. How each is computed: ``headwater/health.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from prefect import flow
from prefect.artifacts import create_table_artifact

from blocks.ledger import open_ledger
from blocks.warehouse import ClickHouseWarehouse
from headwater import events
from headwater.health import FRESH, LATE, STALE, SourceHealth, health_rows, reset_circuit
from headwater.ledger import Ledger
from headwater.logs import run_logger
from headwater.params import FLOW_TIMEOUT_S
from headwater.reconcile import damaged_instances
from headwater.sources import registered_sources

COLUMNS = (
    ("name", 22),
    ("state", 11),
    ("circuit", 10),
    ("reliability", 12),
    ("failures", 9),
    ("last success (UTC)", 21),
    ("age", 9),
    ("cadence", 9),
    ("last status", 21),
    ("rows", 10),
    ("bytes", 12),
)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def format_table(rows: list[SourceHealth]) -> str:
    """The health rows as a fixed-width text table."""
    lines = ["".join(title.ljust(width) for title, width in COLUMNS).rstrip()]
    for row in rows:
        cells = (
            row.name,
            row.state,
            row.circuit,
            "-" if row.reliability is None else f"{row.reliability:.2f}",
            str(row.consecutive_failures),
            row.last_success[:19].replace("T", " ") if row.last_success else "-",
            _duration(row.age_s),
            _duration(row.cadence_s),
            row.last_status or "-",
            "-" if row.last_rows is None else str(row.last_rows),
            "-" if row.last_bytes is None else str(row.last_bytes),
        )
        lines.append("".join(c.ljust(w) for c, (_, w) in zip(cells, COLUMNS, strict=True)).rstrip())
    return "\n".join(lines)


def warehouse_damage(ledger: Ledger) -> dict[str, list[str]]:
    """Instances whose warehouse state disagrees with the ledger (health shows them ``damaged``)."""
    sources = {spec.name: (spec, database) for spec, database in registered_sources()}
    with ClickHouseWarehouse.from_settings().session() as client:
        return damaged_instances(ledger, client, sources, ledger.instances())


@flow(
    name="source-health",
    description="Check every source's freshness; write the health artifact.",
    timeout_seconds=FLOW_TIMEOUT_S,
)
def report_health() -> list[dict[str, object]]:
    """Compute the health view, publish it as a table artifact, and emit stale/recovered events.

    ``headwater.source.stale`` fires when a source turns stale;
    ``headwater.source.recovered`` when a late or stale source is fresh again.
    """
    logger = run_logger()
    with open_ledger() as ledger:
        rows = health_rows(ledger, datetime.now(UTC), warehouse_damage(ledger))
        for row in rows:
            previous = (ledger.health(row.name) or {}).get("freshness")
            source = ledger.source_of(row.name) or row.name
            if row.state == STALE and previous != STALE:
                events.emit(events.SOURCE_STALE, row.name, source, age_s=row.age_s, cadence_s=row.cadence_s)
                logger.warning("%s is stale (last success %s)", row.name, row.last_success)
            elif row.state == FRESH and previous in (LATE, STALE):
                events.emit(events.SOURCE_RECOVERED, row.name, source, previous=previous)
            if previous != row.state:
                ledger.save_health(row.name, source, freshness=row.state)
    create_table_artifact(
        key="source-health",
        table=[row.as_dict() for row in rows],
        description=f"Source health at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
    )
    return [row.as_dict() for row in rows]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m flows.health", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print a JSON list of objects")
    parser.add_argument("--reset", metavar="NAME", help="close the circuit of a source instance")
    args = parser.parse_args(argv)
    with open_ledger() as ledger:
        if args.reset:
            reset_circuit(ledger, args.reset)
            print(f"{args.reset}: circuit closed")
            return 0
        rows = health_rows(ledger, damage=warehouse_damage(ledger))
    print(json.dumps([r.as_dict() for r in rows], indent=2) if args.json else format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
