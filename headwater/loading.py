"""The one load path into ClickHouse: DDL, staging, checks on staged rows, atomic publish.

A batch is one partition of each of its tables (e.g. ``network, processing_date``).
Every table is first staged in full in its own ``_stg_<table>_<tag>`` table; nothing
is visible to readers until publish, which swaps the batch's partition of each
target table with ``ALTER TABLE … REPLACE PARTITION`` (atomic per table). ClickHouse
has no multi-table transaction, so before the first swap the current partition of
each target is copied to ``_bak_<table>_<tag>`` (hard links, no data copied); if a
later swap fails, the tables already swapped are restored from those copies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from clickhouse_connect.driver.binding import format_query_value, quote_identifier
from clickhouse_connect.driver.client import Client

from headwater.errors import PublishError, SchemaViolation
from headwater.logs import run_logger
from headwater.tables import MERGE, REPLACE, TableSpec, table_ddl

ARROW_BATCH_ROWS = 200_000
# Smaller insert blocks: measured on chDB, lower peak memory and a faster insert than the defaults.
FILE_INSERT_SETTINGS = {
    "max_insert_block_size": 262_144,
    "min_insert_block_size_rows": 262_144,
    "min_insert_block_size_bytes": 0,
}


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
) -> StagedTable:
    """Create ``staging`` with the contract's DDL and fill it from a Parquet file.

    ``mode='file'``: the engine reads the file itself (embedded chDB, where the file
    is local to the engine; about twice as fast). ``mode='arrow'``: record batches go
    through the client as Arrow (any ClickHouse server; memory bounded by one batch).
    """
    client.command(f"DROP TABLE IF EXISTS {qualified(database, staging)}")
    client.command(table_ddl(spec, database, staging, tuple(partition_by)))
    columns = ", ".join(quote_identifier(c) for c in spec.column_names)
    target = qualified(database, staging)
    if mode == "file":
        client.command(
            f"INSERT INTO {target} ({columns}, `_batch_id`, `_loaded_at`) "
            f"SELECT {columns}, {format_query_value(batch_id)}, now64(3, 'UTC') "
            f"FROM file({format_query_value(str(path.resolve()))}, Parquet)",
            settings=FILE_INSERT_SETTINGS,
        )
    elif mode == "arrow":
        _stage_arrow(client, target, spec, path, batch_id)
    else:
        raise ValueError(f"unknown ingest mode {mode!r}")
    rows = int(client.command(f"SELECT count() FROM {target}"))  # type: ignore[arg-type]
    return StagedTable(table=spec.name, staging=staging, rows=rows, write_mode=spec.write_mode, key=spec.key)


def _stage_arrow(client: Client, target: str, spec: TableSpec, path: Path, batch_id: str) -> None:
    now = client.command("SELECT toUnixTimestamp64Milli(now64(3, 'UTC'))")
    loaded_at = pa.scalar(int(now), pa.timestamp("ms", tz="UTC"))  # type: ignore[arg-type]
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=ARROW_BATCH_ROWS, columns=list(spec.column_names)):
        table = pa.Table.from_batches([batch])
        table = table.append_column("_batch_id", pa.array([batch_id] * table.num_rows, pa.string()))
        table = table.append_column("_loaded_at", pa.array([loaded_at] * table.num_rows))
        client.insert_arrow(target, table)


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


def check_unique_keys(client: Client, source: str, database: str, spec: TableSpec, staged: StagedTable) -> None:
    """Raise :class:`SchemaViolation` when the table's key is not unique within the batch."""
    duplicates, sample = find_duplicate_keys(client, database, staged.staging, spec.key)
    if duplicates:
        raise SchemaViolation(
            source,
            f"{spec.name}: expected key ({', '.join(spec.key)}) unique within the export, "
            f"found {duplicates} duplicated key value(s), e.g. {', '.join(sample)}",
        )


def _partition_rows(client: Client, table: str, where: str) -> int:
    return int(client.command(f"SELECT count() FROM {table} WHERE {where}"))  # type: ignore[arg-type]


def _swap_in(client: Client, target: str, source_table: str, part: str, rows: int) -> None:
    if rows:
        client.command(f"ALTER TABLE {target} REPLACE PARTITION {part} FROM {source_table}")
    else:
        client.command(f"ALTER TABLE {target} DROP PARTITION {part}")


def publish(
    client: Client,
    *,
    source: str,
    database: str,
    staged: Sequence[StagedTable],
    partition: Mapping[str, Any],
    partition_by: Sequence[str],
    tag: str,
    batch_id: str,
) -> dict[str, int]:
    """Publish every staged table; returns, per merge-mode table, rows whose key already existed.

    ``replace`` tables: the batch's partition of each target is swapped for its staged
    rows. ``merge`` tables (published after them): the staged rows are inserted with an
    insert deduplication token, so a retried publish never duplicates, and the
    ReplacingMergeTree keeps the newest row per key. On failure every table already
    published is put back (replace: from a pre-publish copy; merge: the batch's rows are
    deleted) and :class:`PublishError` is raised.
    """
    part = partition_literal(partition, partition_by)
    where = partition_filter(partition, partition_by)
    ordered = [s for s in staged if s.write_mode == REPLACE] + [s for s in staged if s.write_mode == MERGE]
    previous: dict[str, int] = {}
    for item in ordered:
        if item.write_mode != REPLACE:
            continue
        backup = qualified(database, backup_table_name(item.table, tag))
        target = qualified(database, item.table)
        client.command(f"DROP TABLE IF EXISTS {backup}")
        client.command(f"CREATE TABLE {backup} AS {target}")
        previous[item.table] = _partition_rows(client, target, where)
        if previous[item.table]:
            client.command(f"ALTER TABLE {backup} REPLACE PARTITION {part} FROM {target}")
    deduplicated: dict[str, int] = {}
    published: list[StagedTable] = []
    try:
        for item in ordered:
            target, staging = qualified(database, item.table), qualified(database, item.staging)
            if item.write_mode == MERGE:
                deduplicated[item.table] = _existing_keys(client, target, staging, item.key)
                client.command(
                    f"INSERT INTO {target} SELECT * FROM {staging}",
                    settings={"insert_deduplication_token": f"{batch_id}:{item.table}"},
                )
            else:
                _swap_in(client, target, staging, part, item.rows)
            published.append(item)
    except Exception as error:
        failed = ordered[len(published)].table
        restored = _restore(client, database, published, previous, part, tag, batch_id)
        raise PublishError(
            source,
            f"publishing {failed} failed ({error.__class__.__name__}: {str(error).splitlines()[0]}); "
            f"restored {', '.join(restored) or 'nothing (no table had been swapped)'} to the previous version",
        ) from error
    return deduplicated


def _existing_keys(client: Client, target: str, staging: str, key: Sequence[str]) -> int:
    """Staged rows whose key is already in the target (they replace older versions)."""
    columns = ", ".join(quote_identifier(c) for c in key)
    return int(
        client.command(  # type: ignore[arg-type]
            f"SELECT count() FROM {staging} WHERE ({columns}) IN (SELECT {columns} FROM {target})"
        )
    )


def _restore(
    client: Client,
    database: str,
    published: Sequence[StagedTable],
    previous: Mapping[str, int],
    part: str,
    tag: str,
    batch_id: str,
) -> list[str]:
    restored = []
    for item in reversed(published):
        target = qualified(database, item.table)
        if item.write_mode == MERGE:
            client.command(
                f"ALTER TABLE {target} DELETE WHERE `_batch_id` = {format_query_value(batch_id)}",
                settings={"mutations_sync": 2},
            )
        else:
            backup = qualified(database, backup_table_name(item.table, tag))
            _swap_in(client, target, backup, part, previous[item.table])
        restored.append(item.table)
        run_logger().warning("restored %s.%s (%s)", database, item.table, item.write_mode)
    return restored


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
