"""Weekly retention: old ledger runs, orphaned temp dirs, expired warehouse partitions.

python -m flows.retention [--ledger-days 90] [--temp-max-age-hours 24]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.binding import format_query_value, quote_identifier
from prefect import flow

from blocks.ledger import open_ledger
from blocks.warehouse import ClickHouseWarehouse
from flows.factory import fails_with_reason
from headwater.batch import run_tag
from headwater.cli import local_runs, parse_command_line, report_error
from headwater.loading import qualified, run_tables_older_than
from headwater.logs import run_logger
from headwater.params import FLOW_TIMEOUT_S, check_non_negative, check_positive
from headwater.reconcile import live_run_ids
from headwater.settings import get_settings
from headwater.sources import registered_sources


@dataclass
class RetentionReport:
    """What a retention run removed."""

    ledger_runs_deleted: int = 0
    temp_dirs_removed: list[str] = field(default_factory=list)
    partitions_dropped: list[str] = field(default_factory=list)
    run_tables_dropped: list[str] = field(default_factory=list)


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


def drop_stale_run_tables(now: datetime, max_age_hours: float) -> list[str]:
    """Drop ``_stg_``/``_bak_`` tables older than ``max_age_hours`` whose run is not running.

    A killed run leaves them; the next run of its instance removes them, but an instance
    that never runs again would keep them forever.
    """
    settings = get_settings()
    with open_ledger() as ledger:
        live = {run_tag(run_id) for instance in ledger.instances() for run_id in live_run_ids(ledger, instance)}
    cutoff = int((now - timedelta(hours=max_age_hours)).timestamp())
    databases = sorted({database for _, database in registered_sources(settings)})
    dropped: list[str] = []
    with ClickHouseWarehouse.from_settings().session() as client:
        for database in databases:
            for table, tag in run_tables_older_than(client, database, cutoff):
                if tag in live:
                    continue
                client.command(f"DROP TABLE IF EXISTS {qualified(database, table)}")
                dropped.append(f"{database}.{table}")
    return dropped


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


def retention_run_name() -> str:
    """A retention run's name in the UI: ``retention <today, UTC>``."""
    return f"retention {datetime.now(UTC):%Y-%m-%d}"


@flow(
    name="retention",
    flow_run_name=retention_run_name,
    description="Delete old ledger runs, orphaned temp dirs and expired partitions.",
    timeout_seconds=FLOW_TIMEOUT_S,
)
@fails_with_reason
def apply_retention(ledger_days: int | None = None, temp_max_age_hours: float | None = None) -> RetentionReport:
    """Remove what is past its retention.

    Ledger runs older than ``ledger_days`` (default ``HEADWATER_RETENTION_LEDGER_DAYS``, 90);
    temp dirs untouched for ``temp_max_age_hours`` (default 24); warehouse partitions older
    than a source's declared retention (``HEADWATER_RETENTION_DAYS``, e.g. ``{"sot": 400}``).
    Loaded dataset versions are kept: change detection needs them.
    """
    settings = get_settings()
    days = check_positive(
        "retention", "ledger_days", settings.retention_ledger_days if ledger_days is None else ledger_days
    )
    max_age_hours = check_non_negative(
        "retention",
        "temp_max_age_hours",
        settings.retention_tmp_hours if temp_max_age_hours is None else temp_max_age_hours,
    )
    logger = run_logger()
    now = datetime.now(UTC)
    report = RetentionReport()
    with open_ledger() as ledger:
        report.ledger_runs_deleted = ledger.delete_runs_before(now - timedelta(days=days))
    report.temp_dirs_removed = remove_orphaned_temp_dirs(max_age_hours)
    report.partitions_dropped = drop_expired_partitions(now)
    report.run_tables_dropped = drop_stale_run_tables(now, settings.stale_staging_hours)
    logger.info(
        "retention: %s ledger runs deleted, %s temp dirs removed, %s partitions dropped, %s stale run tables dropped",
        report.ledger_runs_deleted,
        len(report.temp_dirs_removed),
        len(report.partitions_dropped),
        len(report.run_tables_dropped),
    )
    return report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for a bad parameter, 1 for a failure)."""
    parser = argparse.ArgumentParser(prog="python -m flows.retention", description=__doc__.splitlines()[0])
    parser.add_argument("--ledger-days", type=int, default=None, help="delete ledger runs older than this (default 90)")
    parser.add_argument(
        "--temp-max-age-hours", type=float, default=None, help="remove temp dirs untouched this long (default 24)"
    )
    args = parse_command_line(parser, argv)
    try:
        with local_runs():
            report = apply_retention(args.ledger_days, args.temp_max_age_hours)
    except Exception as error:  # one-line reason; the details are in the logs
        return report_error(error)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
