"""Daily catalog cleanup: expired soft-deleted products, orphaned rows, data of removed ingestors.

python -m flows.catalog_cleanup [--config PATH]

Nothing here deletes rows behind the ledger's back. A configured ingestor whose stored
state needs cleaning (soft-deleted products older than ``HEADWATER_CATALOG_KEEP_DELETED_DAYS``,
offers, vectors, product groups or feed categories of no live product) is run again: its
feed and vectors stages rebuild their partitions without them and publish them
atomically, and the ledger records the new versions. An ingestor that is in the
warehouse but no longer in ``ingestion.yaml`` is retired: each of its stages publishes
an empty partition through the same pipeline. The artifact ``catalog-cleanup`` says
what each ingestor had and what was removed.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_table_artifact

from blocks.warehouse import ClickHouseWarehouse
from flows.catalog import catalog_request, ingest_catalog
from flows.factory import fails_with_reason
from headwater.api_batch import FetchResult
from headwater.catalog.config import load_ingestion
from headwater.cli import local_runs, parse_command_line, report_error
from headwater.errors import HeadwaterError
from headwater.ledger import SUCCESSES
from headwater.logs import run_logger
from headwater.outcome import status_of
from headwater.params import FLOW_TIMEOUT_S
from headwater.settings import get_settings
from headwater.sources.catalog import (
    CATALOG_FEED,
    CATALOG_REGISTRY,
    CATALOG_VECTORS,
    catalog_database,
    cleanup_backlog,
    stored_ingestors,
)
from tasks.fetch import run_api_batch


@dataclass
class IngestorCleanup:
    """One ingestor's cleanup: what needed removing before, what is left after, and how."""

    ingestor: str
    action: str
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)

    @property
    def removed(self) -> int:
        """Rows removed over all tables."""
        return sum(self.before.values()) - sum(self.after.values())


def retire(ingestor: str) -> dict[str, str]:
    """Publish an empty partition for each stage of an ingestor no longer configured."""
    statuses = {}
    for stage, source in (("registry", CATALOG_REGISTRY), ("feed", CATALOG_FEED), ("vectors", CATALOG_VECTORS)):
        request = catalog_request(source, ingestor, stage, f"retired: not in {get_settings().ingestion_config.name}")
        empty = FetchResult(frames={name: table.frame([]) for name, table in source.tables.items()})
        statuses[stage] = status_of(run_api_batch(request, lambda empty=empty: empty))  # type: ignore[misc]
    return statuses


def _backlogs(names: list[str], keep_deleted: timedelta) -> dict[str, dict[str, int]]:
    database = catalog_database(get_settings())
    cutoff = datetime.now(UTC) - keep_deleted
    with ClickHouseWarehouse.from_settings().session() as client:
        return {name: cleanup_backlog(client, database, name, cutoff) for name in names}


@flow(name="catalog-cleanup", flow_run_name="catalog cleanup", timeout_seconds=FLOW_TIMEOUT_S)
@fails_with_reason
def clean_catalog(config: str | None = None) -> list[IngestorCleanup]:
    """Clean every ingestor's stored catalog; write the ``catalog-cleanup`` artifact.

    Args:
        config: path of the ingestion.yaml (default HEADWATER_INGESTION_CONFIG, else ./ingestion.yaml)

    """
    logger = run_logger()
    settings = get_settings()
    path = Path(config) if config else settings.ingestion_config
    configured = load_ingestion(path)
    with ClickHouseWarehouse.from_settings().session() as client:
        stored = stored_ingestors(client, catalog_database(settings))
    keep = timedelta(days=settings.catalog_keep_deleted_days)
    before = _backlogs(stored, keep)
    report: list[IngestorCleanup] = []
    for name in stored:
        if name not in configured:
            entry = IngestorCleanup(name, f"retired (not in {path.name})", before[name])
            entry.statuses = retire(name)
        elif any(before[name].values()):
            entry = IngestorCleanup(name, "rebuilt by a run of its stages", before[name])
            entry.statuses = {stage: status_of(r) for stage, r in ingest_catalog(name, str(path)).items()}
        else:
            entry = IngestorCleanup(name, "clean", before[name])
        report.append(entry)
    after = _backlogs([e.ingestor for e in report if e.statuses], keep)
    for entry in report:
        entry.after = after.get(entry.ingestor, entry.before)
        logger.info("catalog-%s: %s, %s rows removed %s", entry.ingestor, entry.action, entry.removed, entry.statuses)
    create_table_artifact(
        key="catalog-cleanup",
        table=[
            {
                "ingestor": e.ingestor,
                "action": e.action,
                **{f"{kind} removed": e.before.get(kind, 0) - e.after.get(kind, 0) for kind in e.before},
                "left": sum(e.after.values()),
                "stages": ", ".join(f"{s} {v}" for s, v in e.statuses.items()) or "-",
            }
            for e in report
        ]
        or [{"ingestor": "-", "action": "no catalog data stored"}],
        description=f"Catalog cleanup at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC (soft-deleted products kept "
        f"{settings.catalog_keep_deleted_days} days)",
    )
    failed = [e.ingestor for e in report if any(s not in SUCCESSES for s in e.statuses.values())]
    if failed:
        raise HeadwaterError("catalog cleanup", f"the stages of {', '.join(failed)} did not all succeed")
    return report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m flows.catalog_cleanup", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="path of ingestion.yaml")
    args = parse_command_line(parser, argv)
    try:
        with local_runs():
            report = clean_catalog(args.config)
    except Exception as error:  # one-line reason
        return report_error(error)
    for entry in report:
        removed = {kind: count - entry.after.get(kind, 0) for kind, count in entry.before.items() if count}
        print(f"catalog-{entry.ingestor}: {entry.action}; {entry.removed} rows removed {removed or ''}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
