"""Validate task: a table's rows against its pandera model, in bounded record batches.

Every failing check is reported at once, with its count and a few examples. The
result is cached on content (the file's SHA-256, the model's source code and the
expected per-batch values), never on a local path, so a retry or a rerun of the same
file skips the work.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandera.errors as pandera_errors
import pandera.polars as pa
import polars as pl
from prefect import task
from prefect.context import TaskRunContext

from headwater.batch import BatchRequest
from headwater.errors import SchemaViolation
from headwater.settings import get_settings
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
        failures = [CheckFailure(c, k, n, tuple(e)) for (c, k), (n, e) in totals.items()]
        raise SchemaViolation(
            source,
            f"{path.name}: {len(failures)} failing check(s): " + "; ".join(str(f) for f in failures),
        )
    return TableValidation(table=spec.name, rows=rows)


def model_source(spec: TableSpec) -> str:
    """The source code of the table's model and of every model class it inherits from."""
    classes = [
        c for c in spec.model.__mro__ if issubclass(c, pa.DataFrameModel) and c.__module__.split(".")[0] != "pandera"
    ]
    return "\n".join(inspect.getsource(c) for c in classes)


def _content_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    request: BatchRequest = parameters["request"]
    spec = request.source.table(parameters["table"])
    expected = sorted((k, str(v)) for k, v in expected_values(request).items())
    fingerprint = hashlib.sha256(f"{model_source(spec)}|{expected}".encode()).hexdigest()[:16]
    return f"validate-{request.source.name}-{spec.name}-{parameters['sha256']}-{fingerprint}"


# No timeout_seconds: submitted to a worker thread like download-file; the flow's time limit bounds it.
@task(
    name="validate-table",
    task_run_name="validate {table} of {request.label}",
    cache_key_fn=_content_key,
    cache_expiration=timedelta(days=7),
    persist_result=True,
)
def validate_table(request: BatchRequest, table: str, path: Path, sha256: str) -> TableValidation:
    """Validate one downloaded table file against its contract model."""
    spec = request.source.table(table)
    return validate_parquet(request.label, spec, path, expected_values(request), get_settings().validation_batch_rows)


__all__ = ["CheckFailure", "TableValidation", "validate_parquet", "validate_table"]
