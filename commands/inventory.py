"""Read-only looks at the warehouse for operators: an ad-hoc query, and the inventory of loaded tables.

``headwater sql`` and ``headwater tables`` print these; both go through the configured
warehouse (embedded chDB or a server) and never write: queries run with ClickHouse's
``readonly`` setting, so an ``INSERT`` or ``DROP`` is refused by the engine itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.exceptions import ClickHouseError

from blocks.warehouse import ClickHouseWarehouse
from headwater.errors import ConfigurationError
from headwater.loading import WORK_TABLE_PREFIXES, qualified

READ_ONLY = {"readonly": 2}
"""Reads only; settings may still change per query (``readonly=1`` would refuse the client's own settings)."""
SYSTEM_DATABASES = ("system", "INFORMATION_SCHEMA", "information_schema")


@dataclass(frozen=True)
class QueryResult:
    """Column names and rows of a read-only query."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


@dataclass(frozen=True)
class TableInfo:
    """One loaded table: its size and the newest batch in it."""

    database: str
    table: str
    rows: int
    partitions: int
    bytes_on_disk: int
    last_batch: str | None
    loaded_at: datetime | None


def read_only_query(sql: str, warehouse: ClickHouseWarehouse | None = None) -> QueryResult:
    """Run ``sql`` read-only on the warehouse; a refused or bad query is a ConfigurationError naming it."""
    warehouse = warehouse or ClickHouseWarehouse.from_settings()
    with warehouse.session() as client:
        try:
            result = client.query(sql, settings=READ_ONLY)
        except ClickHouseError as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConfigurationError("sql", f"{warehouse.describe()}: {first}") from error
    return QueryResult(columns=tuple(result.column_names), rows=[tuple(r) for r in result.result_rows])


def table_inventory(database: str | None = None, warehouse: ClickHouseWarehouse | None = None) -> list[TableInfo]:
    """Every user table (staging and backup tables left out): rows, partitions, bytes and its newest batch.

    The newest batch is the ``_batch_id`` with the latest ``_loaded_at``, read from the
    table itself (the warehouse is the truth); tables without lineage columns show none.
    """
    warehouse = warehouse or ClickHouseWarehouse.from_settings()
    with warehouse.session() as client:
        parts = client.query(
            "SELECT database, table, sum(rows), uniqExact(partition), sum(bytes_on_disk) FROM system.parts "
            "WHERE active AND database NOT IN {system:Array(String)} GROUP BY database, table",
            parameters={"system": list(SYSTEM_DATABASES)},
            settings=READ_ONLY,
        ).result_rows
        sizes = {(str(db), str(t)): (int(r), int(p), int(b)) for db, t, r, p, b in parts}
        tables = client.query(
            "SELECT database, name, "
            "countIf(c.name = '_batch_id') > 0 AND countIf(c.name = '_loaded_at') > 0 AS has_lineage "
            "FROM system.tables AS t LEFT JOIN system.columns AS c ON c.database = t.database AND c.table = t.name "
            "WHERE t.database NOT IN {system:Array(String)} AND t.engine NOT IN ('View', 'MaterializedView') "
            "GROUP BY database, name ORDER BY database, name",
            parameters={"system": list(SYSTEM_DATABASES)},
            settings=READ_ONLY,
        ).result_rows
        found = []
        for db, name, has_lineage in tables:
            if (database and db != database) or name.startswith(WORK_TABLE_PREFIXES):
                continue
            rows, partitions, size = sizes.get((db, name), (0, 0, 0))
            batch, loaded = None, None
            if has_lineage and rows:
                batch, loaded = client.query(
                    f"SELECT argMax(_batch_id, _loaded_at), max(_loaded_at) FROM {qualified(db, name)}",
                    settings=READ_ONLY,
                ).result_rows[0]
            found.append(TableInfo(db, name, rows, partitions, size, batch, loaded))
    return found
