"""A file's rows against its pandera model with pandera's polars backend, in bounded record batches.

The path for files the engine cannot check as they are (``headwater/engine_checks.py``:
a Parquet schema other than the contract's, nulls in a required column, a check with
no SQL) and for the frames file sources read: pandera coerces types and reports
every failing check at once, with its count and a few examples.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandera.errors as pandera_errors
import pandera.polars as pa
import polars as pl

from headwater.batch import BatchRequest
from headwater.engine_checks import EXAMPLES, CheckFailure
from headwater.errors import SchemaViolation
from headwater.tables import TableSpec


@dataclass(frozen=True)
class TableValidation:
    """A table that passed: its name and rows."""

    table: str
    rows: int


def expected_values(request: BatchRequest) -> dict[str, Any]:
    """Per-batch values every row must carry: the partition and the constants."""
    return {**request.partition, **request.constants}


def schema_for(spec: TableSpec, expected: dict[str, Any]) -> pa.DataFrameSchema:
    """The table's schema plus ``equal_to`` checks for the per-batch values."""
    updates = {}
    for name, value in expected.items():
        if name in spec.schema.columns:
            checks = [*list(spec.schema.columns[name].checks), pa.Check.equal_to(value)]
            updates[name] = {"checks": checks}
    return spec.schema.update_columns(updates)


def collect_failures(failure_cases: pl.DataFrame) -> dict[tuple[str, str], tuple[int, list[str]]]:
    """Group pandera's failure cases by (column, check) into counts and examples."""
    grouped = failure_cases.group_by(["column", "check"], maintain_order=True).agg(
        pl.len().alias("count"), pl.col("failure_case").cast(pl.String).head(EXAMPLES).alias("examples")
    )
    return {
        (str(row["column"]), str(row["check"])): (int(row["count"]), list(row["examples"]))
        for row in grouped.iter_rows(named=True)
    }


def _frames(path: Path, batch_rows: int) -> Iterator[pl.DataFrame]:
    """The file's rows as polars frames of at most ``batch_rows`` (one empty frame for no rows).

    polars' own streaming Parquet reader: about five times faster than decoding with
    pyarrow and converting, and memory bounded by one batch.
    """
    empty = True
    for frame in pl.scan_parquet(path).collect_batches(chunk_size=batch_rows):
        empty = False
        yield frame
    if empty:
        yield pl.read_parquet(path)


def validate_parquet(
    source: str, spec: TableSpec, path: Path, expected: dict[str, Any], batch_rows: int
) -> TableValidation:
    """Validate a Parquet file batch by batch; raise one SchemaViolation listing every failure."""
    schema = schema_for(spec, expected)
    totals: dict[tuple[str, str], tuple[int, list[str]]] = {}
    rows = 0
    for frame in _frames(path, batch_rows):
        rows += frame.height
        try:
            schema.validate(frame, lazy=True)
        except pandera_errors.SchemaErrors as error:
            for key, (count, examples) in collect_failures(error.failure_cases).items():
                seen, kept = totals.get(key, (0, []))
                totals[key] = (seen + count, (kept + examples)[:EXAMPLES])
    if totals:
        raise violation(source, path.name, [CheckFailure(c, k, n, tuple(e)) for (c, k), (n, e) in totals.items()])
    return TableValidation(table=spec.name, rows=rows)


def violation(source: str, file_name: str, failures: Sequence[CheckFailure | str]) -> SchemaViolation:
    """The one error of a file that fails its checks: every failure, with its count and examples."""
    return SchemaViolation(
        source, f"{file_name}: {len(failures)} failing check(s): " + "; ".join(str(f) for f in failures)
    )


__all__ = ["TableValidation", "collect_failures", "expected_values", "schema_for", "validate_parquet", "violation"]
