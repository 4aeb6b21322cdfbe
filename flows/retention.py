"""Weekly retention: old ledger runs, orphaned temp dirs, expired warehouse partitions.

python -m flows.retention
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.binding import format_query_value, quote_identifier
from prefect import flow

from blocks.warehouse import ClickHouseWarehouse
from headwater.ledger import open_ledger
from headwater.loading import qualified
from headwater.logs import run_logger
from headwater.settings import get_settings
from headwater.sources import registered_sources


@dataclass
class RetentionReport:
    """What a retention run removed."""

    ledger_runs_deleted: int = 0
    temp_dirs_removed: list[str] = field(default_factory=list)
    partitions_dropped: list[str] = field(default_factory=list)


def remove_orphaned_temp_dirs(max_age_hours: float) -> list[str]:
    """Remove run temp dirs not touched for ``max_age_hours`` (their runs died without cleanup)."""
    tmp = get_settings().tmp_dir
    if not tmp.exists():
        return []
    cutoff = time.time() - max_age_hours * 3600
    removed = []
    for child in sorted(tmp.iterdir()):
        if (
            child.is_dir()
            and max((p.stat().st_mtime for p in child.rglob("*")), default=child.stat().st_mtime) < cutoff
        ):
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child.name)
    return removed


def drop_expired_partitions(today: datetime) -> list[str]:
    """Drop warehouse partitions older than each source's declared retention (``HEADWATER_RETENTION_DAYS``)."""
    settings = get_settings()
    dropped: list[str] = []
    declared = [(spec, db) for spec, db in registered_sources(settings) if spec.name in settings.retention_days]
    if not declared:
        return dropped
    with ClickHouseWarehouse.from_settings().session() as client:
        for spec, database in declared:
            if not spec.date_column:
                continue
            cutoff = (today - timedelta(days=settings.retention_days[spec.name])).date()
            existing = {
                r[0]
                for r in client.query(
                    "SELECT name FROM system.tables WHERE database = {db:String}", parameters={"db": database}
                ).result_rows
            }
            for table in (t for t in spec.tables if t in existing):
                partitions = client.query(
                    f"SELECT DISTINCT _partition_id FROM {qualified(database, table)} "
                    f"WHERE {quote_identifier(spec.date_column)} < {format_query_value(cutoff.isoformat())}"
                ).result_rows
                for (partition_id,) in partitions:
                    client.command(
                        f"ALTER TABLE {qualified(database, table)} DROP PARTITION ID {format_query_value(partition_id)}"
                    )
                    dropped.append(f"{database}.{table}:{partition_id}")
    return dropped


@flow(name="retention", description="Delete old ledger runs, orphaned temp dirs and expired partitions.")
def apply_retention(ledger_days: int | None = None, temp_max_age_hours: float | None = None) -> RetentionReport:
    """Remove what is past its retention.

    Ledger runs older than ``ledger_days`` (default ``HEADWATER_RETENTION_LEDGER_DAYS``, 90);
    temp dirs untouched for ``temp_max_age_hours`` (default 24); warehouse partitions older
    than a source's declared retention (``HEADWATER_RETENTION_DAYS``, e.g. ``{"sot": 400}``).
    Loaded dataset versions are kept: change detection needs them.
    """
    settings = get_settings()
    logger = run_logger()
    now = datetime.now(UTC)
    report = RetentionReport()
    with open_ledger() as ledger:
        report.ledger_runs_deleted = ledger.delete_runs_before(
            now - timedelta(days=ledger_days or settings.retention_ledger_days)
        )
    report.temp_dirs_removed = remove_orphaned_temp_dirs(
        settings.retention_tmp_hours if temp_max_age_hours is None else temp_max_age_hours
    )
    report.partitions_dropped = drop_expired_partitions(now)
    logger.info(
        "retention: %s ledger runs deleted, %s temp dirs removed, %s partitions dropped",
        report.ledger_runs_deleted,
        len(report.temp_dirs_removed),
        len(report.partitions_dropped),
    )
    return report


if __name__ == "__main__":
    print(apply_retention())
    sys.exit(0)
