"""A table's contract checks run inside ClickHouse: while the file is staged, and reported from the staged rows.

The pandera model stays the one declaration of a table's checks. This module
compiles each of its checks into a ClickHouse condition (pandera's built-in column
checks, and dataframe checks that state their SQL twin as
``statistics={"sql": "<condition>"}`` beside their polars body).

When the engine reads the file itself, the conditions guard the staging insert
(:func:`guarded_filter`: ``WHERE throwIf(NOT <all conditions>)``), evaluated on the
decoded rows in the insert's own pass, so a good file costs no second read of its
columns; the staged table is then scanned only for the uniqueness of its key (by
hash). When a row fails, the file is staged again unguarded and :func:`run_checks`
counts every condition and the key in one scan (``countIf(NOT <condition>)`` per
check), and a second query fetches a few examples of each failure: a bad batch pays
for the full report, a good one does not. Rows that reach the server through the
client (Arrow) are checked the same way after staging, by :func:`run_checks`.

Column types, presence and extra columns are not compiled: the engine path runs
only for a file whose Parquet schema is the contract's (:func:`parquet_matches`);
any other file goes through pandera's polars backend, which coerces and reports
them. Nulls in a non-nullable column make the staging insert itself fail
(``input_format_null_as_default = 0``), and that file too is reported by pandera.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandera.polars as pa
import pyarrow
import pyarrow.parquet as pq
from clickhouse_connect.driver.binding import format_query_value, quote_identifier
from clickhouse_connect.driver.client import Client

from headwater.tables import TableSpec

EXAMPLES = 3


@dataclass(frozen=True)
class CheckFailure:
    """One failing check: where, what, how often, and a few offending values."""

    column: str
    check: str
    count: int
    examples: tuple[str, ...]

    def __str__(self) -> str:
        shown = ", ".join(repr(e) for e in self.examples)
        return f"{self.column}: {self.check} failed for {self.count} row(s), e.g. {shown}"


@dataclass(frozen=True)
class SqlCheck:
    """One pandera check as SQL: the condition a passing row meets, and what to show of a failing one."""

    column: str
    label: str
    valid: str
    example: str


class NotCompilable(ValueError):
    """A check this module has no SQL for; the table is validated by pandera's polars backend."""


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime | date):
        return format_query_value(value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat())
    return format_query_value(str(value))


def _between(column: str, stats: Mapping[str, Any]) -> str:
    low = ">=" if stats.get("include_min", True) else ">"
    high = "<=" if stats.get("include_max", True) else "<"
    return f"{column} {low} {_literal(stats['min_value'])} AND {column} {high} {_literal(stats['max_value'])}"


def _length(column: str, stats: Mapping[str, Any]) -> str:
    chars = f"lengthUTF8({column})"
    if stats.get("exact_value") is not None:
        return f"{chars} = {stats['exact_value']}"
    bounds = [f"{chars} >= {stats['min_value']}"] if stats.get("min_value") is not None else []
    bounds += [f"{chars} <= {stats['max_value']}"] if stats.get("max_value") is not None else []
    return " AND ".join(bounds)


def _values(values: Any) -> str:
    return ", ".join(_literal(v) for v in values)


def _anchored(pattern: Any) -> str:
    text = getattr(pattern, "pattern", pattern)
    return text if text.startswith("^") else f"^{text}"


_BUILTINS: dict[str, Callable[[str, Mapping[str, Any]], str]] = {
    "equal_to": lambda c, s: f"{c} = {_literal(s['value'])}",
    "not_equal_to": lambda c, s: f"{c} != {_literal(s['value'])}",
    "greater_than": lambda c, s: f"{c} > {_literal(s['min_value'])}",
    "greater_than_or_equal_to": lambda c, s: f"{c} >= {_literal(s['min_value'])}",
    "less_than": lambda c, s: f"{c} < {_literal(s['max_value'])}",
    "less_than_or_equal_to": lambda c, s: f"{c} <= {_literal(s['max_value'])}",
    "in_range": _between,
    "isin": lambda c, s: f"{c} IN ({_values(s['allowed_values'])})",
    "notin": lambda c, s: f"{c} NOT IN ({_values(s['forbidden_values'])})",
    "str_length": _length,
    "str_matches": lambda c, s: f"match({c}, {format_query_value(_anchored(s['pattern']))})",
    "str_contains": lambda c, s: f"match({c}, {format_query_value(getattr(s['pattern'], 'pattern', s['pattern']))})",
    "str_startswith": lambda c, s: f"startsWith({c}, {format_query_value(s['string'])})",
    "str_endswith": lambda c, s: f"endsWith({c}, {format_query_value(s['string'])})",
}


def compile_checks(schema: pa.DataFrameSchema) -> list[SqlCheck]:
    """Every check of ``schema`` as SQL, in pandera's order; :class:`NotCompilable` when one has no SQL."""
    checks: list[SqlCheck] = []
    for name, column in schema.columns.items():
        quoted = quote_identifier(name)
        for check in column.checks:
            builder = _BUILTINS.get(check.name or "")
            if builder is None:
                raise NotCompilable(f"{name}: no SQL for check {check.name!r}")
            checks.append(SqlCheck(name, str(check.error), builder(quoted, check.statistics), quoted))
    for check in schema.checks:
        sql = (check.statistics or {}).get("sql")
        if not sql:
            raise NotCompilable(f"{schema.name}: dataframe check {check.name!r} states no SQL")
        columns = ", ".join(quote_identifier(c) for c in schema.columns)
        checks.append(SqlCheck(str(schema.name), str(check.error), str(sql), f"toJSONString(tuple({columns}))"))
    return checks


def _normal(dtype: pyarrow.DataType) -> pyarrow.DataType:
    """Arrow types as the contract compares them: large strings and lists are strings and lists."""
    if pyarrow.types.is_large_string(dtype):
        return pyarrow.string()
    if pyarrow.types.is_large_list(dtype) or pyarrow.types.is_list(dtype):
        return pyarrow.list_(_normal(dtype.value_type))
    return dtype


def parquet_matches(path: Path, spec: TableSpec) -> bool:
    """True when the file holds exactly the contract's columns with its types (read from the footer only)."""
    found = {f.name: _normal(f.type) for f in pq.read_schema(path)}
    wanted = {f.name: _normal(f.type) for f in spec.arrow_schema}
    return found == wanted


@dataclass(frozen=True)
class StagedCheck:
    """What one scan of a staged table found: its rows, each failing check, and its duplicated keys."""

    rows: int
    failures: tuple[CheckFailure, ...]
    duplicated_keys: int


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


GUARD_MESSAGE = "headwater: a row fails a contract check"
"""The text of the ``throwIf`` a guarded staging insert raises; :func:`guard_failed` finds it in an error."""


def guard_condition(checks: Sequence[SqlCheck]) -> str | None:
    """One condition every passing row meets (a null passes, as in pandera and in ``countIf``); None when no checks."""
    if not checks:
        return None
    return " AND ".join(f"ifNull(({c.valid}), true)" for c in checks)


def guarded_filter(condition: str) -> str:
    """A ``WHERE`` clause that keeps every row and stops the insert at the first one failing ``condition``."""
    return f"WHERE throwIf(NOT ({condition}), {format_query_value(GUARD_MESSAGE)}) = 0"


def guard_failed(error: BaseException) -> bool:
    """True when ``error`` is a guarded insert stopped by a failing row."""
    return GUARD_MESSAGE in str(error)


def run_checks(
    client: Client, table: str, checks: Sequence[SqlCheck], key: Sequence[str], examples: int = EXAMPLES
) -> StagedCheck:
    """Evaluate ``checks`` and the uniqueness of ``key`` over ``table`` (qualified) in one scan.

    Keys are counted by their 64-bit hash: equal keys hash alike, so a count equal to the
    rows proves the key unique; a smaller one (a duplicate, or in about one batch in 10^12
    a collision) is confirmed by the exact query of :func:`headwater.loading.duplicate_keys_message`.
    """
    failing = [f"countIf(NOT ({c.valid}))" for c in checks]
    unique = f"uniqExact(cityHash64({', '.join(quote_identifier(k) for k in key)}))" if key else "count()"
    row = client.query(f"SELECT count(), {unique}{''.join(', ' + f for f in failing)} FROM {table}").result_rows[0]
    rows, distinct, counts = int(row[0]), int(row[1]), [int(n) for n in row[2:]]
    failed = [(check, count) for check, count in zip(checks, counts, strict=True) if count]
    found: list[CheckFailure] = []
    if failed:
        samples = ", ".join(f"groupArrayIf({examples})({c.example}, NOT ({c.valid}))" for c, _ in failed)
        values = client.query(f"SELECT {samples} FROM {table}").result_rows[0]
        found = [
            CheckFailure(check.column, check.label, count, tuple(_shown(v) for v in sample))
            for (check, count), sample in zip(failed, values, strict=True)
        ]
    return StagedCheck(rows=rows, failures=tuple(found), duplicated_keys=rows - distinct)


__all__ = [
    "EXAMPLES",
    "GUARD_MESSAGE",
    "CheckFailure",
    "NotCompilable",
    "SqlCheck",
    "StagedCheck",
    "compile_checks",
    "guard_condition",
    "guard_failed",
    "guarded_filter",
    "parquet_matches",
    "run_checks",
]
