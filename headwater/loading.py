"""The one load path into ClickHouse: DDL, staging, checks on staged rows, atomic publish.

A batch is one partition of each of its tables (e.g. ``network, processing_date``).
Every table is first staged in full in its own ``_stg_<table>_<tag>`` table; nothing
is visible to readers until publish, which swaps the batch's partition of each
target table with ``ALTER TABLE … REPLACE PARTITION`` (atomic per table for a living
process). Merge-mode tables are published the same way: their affected partitions are
rebuilt (current rows plus the batch, newest per key) and swapped, so a plain query
never sees two versions of a key. ClickHouse has no multi-table transaction, so before
the first swap the current partitions are copied to ``_bak_<table>_<tag>`` (hard
links, no data copied); if a later swap fails, the tables already swapped are restored
from those copies. What a reader sees at each step, and how a crash is repaired, is in
``docs/architecture.md`` and ``headwater/reconcile.py``.
"""

from __future__ import annotations

import contextvars
import queue
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from clickhouse_connect.driver.binding import format_query_value, quote_identifier
from clickhouse_connect.driver.client import Client

from headwater.engine_checks import (
    CheckFailure,
    NotCompilable,
    compile_checks,
    guard_condition,
    guard_failed,
    guarded_filter,
    parquet_matches,
    run_checks,
)
from headwater.errors import PublishError, SchemaViolation
from headwater.faults import checkpoint
from headwater.logs import run_logger
from headwater.tables import MERGE, REPLACE, TableSpec, table_ddl
from headwater.validation import schema_for, validate_parquet, violation

ARROW_BATCH_ROWS = 200_000
# A null in a non-nullable column fails the insert instead of becoming the type's default.
# The engine's default insert blocks (about 1M rows): smaller ones (262,144 rows, measured
# at 3M rows on chDB 26.9) make four times the parts, whose background merges and the key
# scan over them cost 2 CPU seconds more per SOT batch, for about 10% less peak memory.
FILE_INSERT_SETTINGS = {"input_format_null_as_default": 0}
NULL_IN_REQUIRED_COLUMN = "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN"


@dataclass(frozen=True)
class StagedTable:
    """A table whose batch rows sit complete in a staging table, ready to publish."""

    table: str
    staging: str
    rows: int
    write_mode: str = REPLACE
    key: tuple[str, ...] = ()


def qualified(database: str, table: str) -> str:
    """``database.table``, quoted."""
    return f"{quote_identifier(database)}.{quote_identifier(table)}"


WORK_TABLE_PREFIXES = ("_stg_", "_bak_")
"""Names of a run's staging and backup tables start with these (never a published table's)."""


def staging_table_name(table: str, tag: str) -> str:
    """Name of the staging table of ``table`` for run ``tag``."""
    return f"_stg_{table}_{tag}"


def backup_table_name(table: str, tag: str) -> str:
    """Name of the pre-publish copy of ``table`` for run ``tag``."""
    return f"_bak_{table}_{tag}"


def partition_literal(partition: Mapping[str, Any], columns: Sequence[str]) -> str:
    """The ``PARTITION`` expression of a batch, e.g. ``('ethereum', '2026-11-22')``."""
    values = ", ".join(format_query_value(str(partition[c])) for c in columns)
    return f"({values})" if len(columns) > 1 else values


def partition_filter(partition: Mapping[str, Any], columns: Sequence[str]) -> str:
    """A ``WHERE`` condition selecting a batch's rows."""
    return " AND ".join(f"{quote_identifier(c)} = {format_query_value(str(partition[c]))}" for c in columns)


def ensure_database(client: Client, database: str) -> None:
    """Create the database if it does not exist."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")


def ensure_table(client: Client, database: str, spec: TableSpec, partition_by: Sequence[str]) -> None:
    """Create the target table of ``spec`` if it does not exist."""
    client.command(table_ddl(spec, database, spec.name, tuple(partition_by)))


def stage_parquet(
    client: Client,
    *,
    database: str,
    spec: TableSpec,
    partition_by: Sequence[str],
    staging: str,
    path: Path,
    batch_id: str,
    mode: str,
    guard: str | None = None,
) -> StagedTable:
    """Create ``staging`` with the contract's DDL and fill it from a Parquet file.

    ``mode='file'``: the engine reads the file itself (embedded chDB, where the file
    is local to the engine; about twice as fast), and ``guard`` (a condition every
    row must meet) stops the insert at the first row that fails it.
    ``mode='arrow'``: record batches go through the client as Arrow (any ClickHouse
    server; memory bounded by one batch); ``guard`` does not apply.
    """
    client.command(f"DROP TABLE IF EXISTS {qualified(database, staging)}")
    client.command(table_ddl(spec, database, staging, tuple(partition_by)))
    columns = ", ".join(quote_identifier(c) for c in spec.column_names)
    target = qualified(database, staging)
    if mode == "file":
        client.command(
            f"INSERT INTO {target} ({columns}, `_batch_id`, `_loaded_at`) "
            f"SELECT {columns}, {format_query_value(batch_id)}, now64(3, 'UTC') "
            f"FROM file({format_query_value(str(path.resolve()))}, Parquet)"
            + (f" {guarded_filter(guard)}" if guard else ""),
            settings=file_insert_settings(spec),
        )
    elif mode == "arrow":
        _stage_arrow(client, target, spec, path, batch_id)
    else:
        raise ValueError(f"unknown ingest mode {mode!r}")
    rows = int(client.command(f"SELECT count() FROM {target}"))  # type: ignore[arg-type]
    return StagedTable(table=spec.name, staging=staging, rows=rows, write_mode=spec.write_mode, key=spec.key)


def file_insert_settings(spec: TableSpec) -> dict[str, Any]:
    """The staging insert's settings: the defaults, or small blocks read by ``pread`` for wide rows."""
    if not spec.insert_block_rows:
        return FILE_INSERT_SETTINGS
    rows = int(spec.insert_block_rows)
    return {
        **FILE_INSERT_SETTINGS,
        "max_insert_block_size": rows,
        "min_insert_block_size_rows": rows,
        "min_insert_block_size_bytes": 0,
        "storage_file_read_method": "pread",
    }


def _stage_arrow(client: Client, target: str, spec: TableSpec, path: Path, batch_id: str) -> None:
    now = client.command("SELECT toUnixTimestamp64Milli(now64(3, 'UTC'))")
    loaded_at = pa.scalar(int(now), pa.timestamp("ms", tz="UTC"))  # type: ignore[arg-type]
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=ARROW_BATCH_ROWS, columns=list(spec.column_names)):
        table = pa.Table.from_batches([batch])
        table = table.append_column("_batch_id", pa.array([batch_id] * table.num_rows, pa.string()))
        table = table.append_column("_loaded_at", pa.array([loaded_at] * table.num_rows))
        client.insert_arrow(target, table, settings={"input_format_null_as_default": 0})


def stage_checked(
    client: Client,
    *,
    source: str,
    database: str,
    spec: TableSpec,
    partition_by: Sequence[str],
    staging: str,
    path: Path,
    batch_id: str,
    mode: str,
    expected: Mapping[str, Any],
    batch_rows: int,
) -> StagedTable:
    """Stage a file and check it against its contract; raise :class:`SchemaViolation` listing every failure.

    A file with the contract's Parquet schema is read once, by the staging insert, whose
    rows are checked in the same pass (the compiled checks guard the insert, file mode);
    the staged table is then scanned for the key's uniqueness only. When a row fails, or
    rows came through the client (arrow mode), one scan of the staged table counts every
    check and the key. Any other file, a null in a required column, or a model with a
    check that has no SQL goes through pandera's polars backend, which coerces and
    reports what the engine cannot.
    """

    def stage(guard: str | None) -> StagedTable:
        return stage_parquet(
            client,
            database=database,
            spec=spec,
            partition_by=partition_by,
            staging=staging,
            path=path,
            batch_id=batch_id,
            mode=mode,
            guard=guard,
        )

    schema = schema_for(spec, dict(expected))
    try:
        checks = compile_checks(schema) if parquet_matches(path, spec) else None
    except NotCompilable:
        checks = None
    if checks is None:
        validate_parquet(source, spec, path, dict(expected), batch_rows)
        staged = stage(None)
        check_unique_keys(client, source, database, spec, staged)
        return staged
    guard = guard_condition(checks) if mode == "file" else None
    try:
        staged = stage(guard)
        unchecked = [] if guard else checks  # a guarded insert has checked every row
    except Exception as error:
        if NULL_IN_REQUIRED_COLUMN in str(error):
            validate_parquet(source, spec, path, dict(expected), batch_rows)  # reports the nulls and the rest
        if not guard_failed(error):
            raise
        staged = stage(None)  # every row, to count and show each failing check
        unchecked = checks
    found = run_checks(client, qualified(database, staging), unchecked, spec.key)
    problems: list[CheckFailure | str] = list(found.failures)
    duplicates = duplicate_keys_message(client, database, spec, staging) if found.duplicated_keys else None
    if duplicates:
        problems.append(duplicates)
    if problems:
        raise violation(source, path.name, problems)
    if guard and unchecked:  # the guard stopped the insert, yet no check fails on the staged rows
        raise SchemaViolation(source, f"{path.name}: a row failed the contract's checks while staging")
    return staged


def stage_concurrently(
    clients: Sequence[Client], jobs: Iterable[tuple[int, Callable[[Client], StagedTable]]]
) -> list[StagedTable]:
    """Run each ``(position, stage)`` job on a free client as soon as it arrives; results in position order.

    The tables of a batch are independent until publish: one staging insert keeps about
    1.5 cores busy, and a second one at the same time fills the rest; ``jobs`` may be
    lazy (a table arrives when its download is verified), so staging overlaps the
    downloads still running. Each job runs in a copy of the caller's context (the run
    logger, settings).

    Failures: when ``jobs`` itself raises (a download or its verification failed), no
    further job starts, the running ones finish, and that error is raised. When a job
    fails, the jobs after it (by position) are skipped or cancelled, the ones before it
    still run, and the failure at the lowest position is raised: the error a batch
    reports is its first failing table in the manifest's order, whatever the timing.
    """
    free: queue.SimpleQueue[Client] = queue.SimpleQueue()
    for client in clients:
        free.put(client)

    def run(stage: Callable[[Client], StagedTable]) -> StagedTable:
        client = free.get()
        try:
            return stage(client)
        finally:
            free.put(client)

    futures: dict[int, Future[StagedTable]] = {}

    def failures() -> dict[int, BaseException]:
        done = {p: f for p, f in futures.items() if f.done() and not f.cancelled()}
        return {p: error for p, f in sorted(done.items()) if (error := f.exception()) is not None}

    def first_failed() -> int | None:
        """The lowest position that failed, if any; the jobs after it that have not started are cancelled."""
        failed = min(failures(), default=None)
        for later, future in futures.items():
            if failed is not None and later > failed:
                future.cancel()  # not started yet: the batch fails anyway
        return failed

    with ThreadPoolExecutor(max_workers=len(clients), thread_name_prefix="stage") as pool:
        try:
            for position, stage in jobs:
                failed = first_failed()
                if failed is None or position < failed:
                    futures[position] = pool.submit(contextvars.copy_context().run, run, stage)
        except BaseException:
            for future in futures.values():
                future.cancel()
            wait(futures.values())  # the running tables end before the error leaves
            for failure in failures().values():
                run_logger().warning("also failed while staging: %s", failure)
            raise
        first_failed()
    found = failures()
    if found:
        raise found[min(found)]
    return [futures[p].result() for p in sorted(futures)]


def find_duplicate_keys(
    client: Client, database: str, staging: str, key: Sequence[str], examples: int = 5
) -> tuple[int, list[str]]:
    """How many key values occur more than once in ``staging``, and a few of them."""
    key_expr = ", ".join(quote_identifier(c) for c in key)
    result = client.query(
        f"SELECT count(), groupArray({examples})(k) FROM ("
        f"SELECT toString(tuple({key_expr})) AS k, count() AS n FROM {qualified(database, staging)} "
        f"GROUP BY {key_expr} HAVING n > 1)"
    )
    count, sample = result.result_rows[0]
    return int(count), list(sample)


def duplicate_keys_message(client: Client, database: str, spec: TableSpec, staging: str) -> str | None:
    """What is wrong with the table's key in ``staging``: None when it is unique within the batch."""
    duplicates, sample = find_duplicate_keys(client, database, staging, spec.key)
    if not duplicates:
        return None
    return (
        f"{spec.name}: expected key ({', '.join(spec.key)}) unique within the export, "
        f"found {duplicates} duplicated key value(s), e.g. {', '.join(sample)}"
    )


def check_unique_keys(client: Client, source: str, database: str, spec: TableSpec, staged: StagedTable) -> None:
    """Raise :class:`SchemaViolation` when the table's key is not unique within the batch."""
    message = duplicate_keys_message(client, database, spec, staged.staging)
    if message:
        raise SchemaViolation(source, message)


@dataclass(frozen=True)
class Part:
    """One ClickHouse partition a publish swaps: its ``PARTITION`` expression and a filter selecting it."""

    expr: str
    where: str


@dataclass(frozen=True)
class TablePlan:
    """How one table's batch is published, and what each table must hold afterwards (or before).

    ``source`` is the table whose partitions replace the target's (the staging table; for
    a merge table, the rebuilt partitions: current rows plus the batch, newest per key);
    ``backup`` holds the target's partitions as they were. ``expected_rows`` is what the
    swapped partitions must hold after publish; ``previous`` what they held before
    (rows per ``_batch_id``).
    """

    table: str
    mode: str
    source: str
    backup: str
    parts: tuple[Part, ...]
    expected_rows: int
    previous: dict[str, int]
    key: tuple[str, ...]
    batch_rows: int

    @property
    def where(self) -> str:
        """A filter selecting every swapped partition."""
        return parts_filter(self.parts)

    def as_json(self) -> dict[str, Any]:
        """The plan as JSON for the ledger's publish intent."""
        return {**asdict(self), "parts": [asdict(p) for p in self.parts], "key": list(self.key)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TablePlan:
        """A plan read back from a publish intent."""
        return cls(
            **{
                **data,
                "parts": tuple(Part(**p) for p in data["parts"]),
                "key": tuple(data["key"]),
                "previous": dict(data["previous"]),
            }
        )


def parts_filter(parts: Sequence[Part]) -> str:
    """A filter selecting the rows of every one of ``parts`` (nothing for no parts)."""
    return " OR ".join(f"({p.where})" for p in parts) or "0"


def distinct_keys(client: Client, database: str, table: str, key: Sequence[str], where: str) -> int:
    """How many distinct values of ``key`` the rows ``where`` selects hold."""
    columns = ", ".join(quote_identifier(c) for c in key)
    return int(
        client.command(  # type: ignore[arg-type]
            f"SELECT uniqExact({columns}) FROM {qualified(database, table)} WHERE {where}"
        )
    )


def _count(client: Client, table: str, where: str) -> int:
    return int(client.command(f"SELECT count() FROM {table} WHERE {where}"))  # type: ignore[arg-type]


def batches_in(client: Client, database: str, table: str, where: str) -> dict[str, int]:
    """Rows per ``_batch_id`` of the rows ``where`` selects in ``table``."""
    result = client.query(
        f"SELECT _batch_id, count() FROM {qualified(database, table)} WHERE {where} GROUP BY _batch_id"
    )
    return {str(batch): int(rows) for batch, rows in result.result_rows}


def table_exists(client: Client, database: str, table: str) -> bool:
    """True when ``database.table`` exists."""
    return bool(
        int(
            client.command(  # type: ignore[arg-type]
                f"EXISTS TABLE {qualified(database, table)}"
            )
        )
    )


def swap_partitions(client: Client, database: str, target: str, source: str, parts: Sequence[Part]) -> None:
    """Make each of ``parts`` of ``target`` hold exactly what ``source`` holds there (atomic per partition)."""
    for part in parts:
        if _count(client, qualified(database, source), part.where):
            client.command(
                f"ALTER TABLE {qualified(database, target)} REPLACE PARTITION {part.expr} "
                f"FROM {qualified(database, source)}"
            )
        else:
            client.command(f"ALTER TABLE {qualified(database, target)} DROP PARTITION {part.expr}")


def _merge_parts(client: Client, database: str, staging: str) -> tuple[Part, ...]:
    ids = client.query(f"SELECT DISTINCT _partition_id FROM {qualified(database, staging)} ORDER BY 1").result_rows
    return tuple(
        Part(expr=f"ID {format_query_value(pid)}", where=f"_partition_id = {format_query_value(pid)}") for (pid,) in ids
    )


def _rebuild_merge_partitions(
    client: Client, database: str, item: StagedTable, parts: Sequence[Part], tag: str
) -> tuple[str, int]:
    """Build the merge table's new partitions: current rows (deduplicated) whose key the batch lacks, plus the batch.

    Publishing them with the same partition swap as snapshots means a plain ``SELECT``
    never sees two versions of a key. Returns the rebuilt table and how many staged keys
    replace existing ones.
    """
    target, staging = qualified(database, item.table), qualified(database, item.staging)
    rebuilt_name = f"_stg_{item.table}_merged_{tag}"
    rebuilt = qualified(database, rebuilt_name)
    key = ", ".join(quote_identifier(c) for c in item.key)
    where = parts_filter(parts)
    client.command(f"DROP TABLE IF EXISTS {rebuilt}")
    client.command(f"CREATE TABLE {rebuilt} AS {target}")
    replaced = int(
        client.command(  # type: ignore[arg-type]
            f"SELECT count() FROM {staging} WHERE ({key}) IN (SELECT {key} FROM {target} WHERE {where})"
        )
    )
    client.command(
        f"INSERT INTO {rebuilt} SELECT * FROM {target} FINAL WHERE ({where}) "
        f"AND ({key}) NOT IN (SELECT {key} FROM {staging})"
    )
    client.command(f"INSERT INTO {rebuilt} SELECT * FROM {staging}")
    return rebuilt_name, replaced


def plan_publish(
    client: Client,
    *,
    database: str,
    staged: Sequence[StagedTable],
    partition: Mapping[str, Any],
    partition_by: Sequence[str],
    tag: str,
) -> tuple[list[TablePlan], dict[str, int]]:
    """Prepare every table's publish: back up the partitions it will swap, rebuild merge partitions.

    Nothing visible changes here. Returns the plans (in publish order) and, per merge
    table, how many staged rows replace an existing key.
    """
    plans: list[TablePlan] = []
    deduplicated: dict[str, int] = {}
    for item in staged:
        target = qualified(database, item.table)
        if item.write_mode == MERGE:
            parts = _merge_parts(client, database, item.staging)
            if not parts:
                continue
            source, deduplicated[item.table] = _rebuild_merge_partitions(client, database, item, parts, tag)
        else:
            parts = (Part(partition_literal(partition, partition_by), partition_filter(partition, partition_by)),)
            source = item.staging
        where = parts_filter(parts)
        backup = backup_table_name(item.table, tag)
        client.command(f"DROP TABLE IF EXISTS {qualified(database, backup)}")
        client.command(f"CREATE TABLE {qualified(database, backup)} AS {target}")
        swap_partitions(client, database, backup, item.table, parts)
        plans.append(
            TablePlan(
                table=item.table,
                mode=item.write_mode,
                source=source,
                backup=backup,
                parts=parts,
                expected_rows=_count(client, qualified(database, source), where),
                previous=batches_in(client, database, item.table, where),
                key=item.key,
                batch_rows=item.rows,
            )
        )
    return plans, deduplicated


def mismatch(client: Client, database: str, plan: TablePlan, batch_id: str | None) -> str | None:
    """How the target's swapped partitions differ from the published state; None when they hold it.

    ``batch_id`` given: the state after publish (a replace table holds exactly that batch
    with the expected rows; a merge table the expected rows, one per key). ``None``: the
    state before publish (the rows per batch recorded in the plan).
    """
    found = batches_in(client, database, plan.table, plan.where)
    if batch_id is None:
        return None if found == plan.previous else f"{plan.table}: expected {plan.previous}, found {found}"
    if plan.mode == MERGE:
        rows = sum(found.values())
        keys = distinct_keys(client, database, plan.table, plan.key, plan.where)
        if rows == plan.expected_rows == keys:
            return None
        return f"{plan.table}: expected {plan.expected_rows} rows with unique keys, found {rows} rows, {keys} keys"
    expected = {batch_id: plan.expected_rows} if plan.expected_rows else {}
    return None if found == expected else f"{plan.table}: expected {expected}, found {found}"


def publish(client: Client, *, source: str, database: str, plans: Sequence[TablePlan]) -> None:
    """Swap every planned table's partitions in; on failure put back the ones already swapped.

    Each swap is atomic for a living process; across tables there is no transaction,
    so a failure restores the tables already published from their backups and raises
    :class:`PublishError`. A crash (kill -9) in between is repaired by the next run's
    reconciliation (``headwater/reconcile.py``) from the publish intent in the ledger.
    """
    published: list[TablePlan] = []
    try:
        for plan in plans:
            if published:
                checkpoint("mid-publish")
            swap_partitions(client, database, plan.table, plan.source, plan.parts)
            published.append(plan)
    except Exception as error:
        failed = plans[len(published)].table
        restored = []
        for plan in reversed(published):
            swap_partitions(client, database, plan.table, plan.backup, plan.parts)
            restored.append(plan.table)
            run_logger().warning("restored %s.%s (%s)", database, plan.table, plan.mode)
        raise PublishError(
            source,
            f"publishing {failed} failed ({error.__class__.__name__}: {str(error).splitlines()[0]}); "
            f"restored {', '.join(restored) or 'nothing (no table had been swapped)'} to the previous version",
        ) from error


def drop_run_tables(client: Client, database: str, tag: str) -> list[str]:
    """Drop every staging and backup table of run ``tag``; returns their names."""
    if not int(
        client.command(  # type: ignore[arg-type]
            f"SELECT count() FROM system.databases WHERE name = {format_query_value(database)}"
        )
    ):
        return []
    names = [
        row[0]
        for row in client.query(
            "SELECT name FROM system.tables WHERE database = {db:String} "
            "AND (name LIKE '\\_stg\\_%' OR name LIKE '\\_bak\\_%') AND endsWith(name, {suffix:String})",
            parameters={"db": database, "suffix": f"_{tag}"},
        ).result_rows
    ]
    for name in names:
        client.command(f"DROP TABLE IF EXISTS {qualified(database, name)}")
    return names


def run_tables_older_than(client: Client, database: str, cutoff_unix: int) -> list[tuple[str, str]]:
    """``(table, run tag)`` of every staging or backup table in ``database`` last changed before ``cutoff_unix``."""
    rows = client.query(
        "SELECT name FROM system.tables WHERE database = {db:String} "
        "AND (name LIKE '\\_stg\\_%' OR name LIKE '\\_bak\\_%') "
        "AND toUnixTimestamp(metadata_modification_time) < {cutoff:Int64}",
        parameters={"db": database, "cutoff": cutoff_unix},
    ).result_rows
    return [(str(name), str(name).rsplit("_", 1)[-1]) for (name,) in rows]
