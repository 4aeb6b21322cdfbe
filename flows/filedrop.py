"""Ingest the files of a file source declared in ``sources.yaml`` into ClickHouse.

python -m flows.filedrop --source NAME [--file PATH] [--config PATH]

``--file`` (absolute, or relative to the source's folder) ingests that file; without it
every file of the folder matching the source's glob is ingested (the scheduled run and
the on-arrival safety net). Each file is its own batch through the shared pipeline.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandera.errors as pandera_errors
import polars as pl
from prefect import flow

from flows.factory import fails_with_reason
from headwater.api_batch import FetchResult
from headwater.batch import BatchRequest
from headwater.cli import parse_command_line, run_flow_cli
from headwater.errors import ConfigurationError, HeadwaterError, SchemaViolation
from headwater.filedrop import (
    FILE_COLUMN,
    Failure,
    FileRejected,
    FileSource,
    get_source,
    list_files,
    read_file,
    reject_file,
    relative_name,
    resolve_file,
    source_spec,
)
from headwater.ledger import LOADED, SKIPPED_CIRCUIT_OPEN, UNCHANGED
from headwater.logs import run_logger
from headwater.manifest import sha256_file
from headwater.outcome import BatchOutcome, RunResult
from headwater.params import FLOW_TIMEOUT_S
from headwater.spec import SourceSpec
from headwater.validation import collect_failures, expected_values, schema_for
from tasks.fetch import run_api_batch


@flow(name="ingest-file-drop", flow_run_name="file drop {source}", timeout_seconds=FLOW_TIMEOUT_S)
@fails_with_reason
def ingest_file_drop(source: str, file: str | None = None, config_path: str | None = None) -> RunResult:
    """Ingest one file (``file``) or every file of a declared file source, each as its own partition.

    A file whose content equals its loaded version is ``unchanged`` and loads nothing; a
    changed file replaces its own rows. A file that fails its checks is moved to
    ``rejected/`` beside it with ``<file>.report.json`` (the reason and the failing checks)
    and nothing of it reaches the warehouse; the run then fails. ``config_path`` defaults
    to ``sources.yaml`` at the repository root.
    """
    declared = get_source(source, config_path)
    if not declared.folder.is_dir():
        raise ConfigurationError(source, f"expected the folder {declared.folder}, found none")
    paths = [resolve_file(declared, file)] if file else list_files(declared)
    spec = source_spec(declared)
    outcomes: list[BatchOutcome] = []
    errors: list[HeadwaterError] = []
    for path in paths:
        try:
            result = ingest_file(declared, spec, path)
        except HeadwaterError as error:
            errors.append(error)
            continue
        if not isinstance(result, BatchOutcome):  # superseded: the policy is 'all', so only by hand
            return result
        outcomes.append(result)
        if result.status == SKIPPED_CIRCUIT_OPEN:
            break
    if errors:
        if file:
            raise errors[0]
        raise HeadwaterError(source, f"{len(errors)} of {len(paths)} file(s) failed: {'; '.join(map(str, errors))}")
    return outcomes[0] if file else combine(source, outcomes)


def ingest_file(source: FileSource, spec: SourceSpec, path: Path) -> RunResult:
    """One file through the shared pipeline (partition ``source_file``); a file that fails its checks is rejected."""
    name = relative_name(source, path)
    request = BatchRequest(
        source=spec,
        instance=source.name,
        partition={FILE_COLUMN: name},
        database=source.database,
        location=path.as_uri(),
    )
    read: dict[str, Any] = {}

    def fetch() -> FetchResult:
        read["sha256"], read["bytes"] = sha256_file(path), path.stat().st_size
        read["frame"] = read_file(source, path, request.label)
        notes = {"file": name, "sha256": read["sha256"], "bytes": read["bytes"]}
        return FetchResult(frames={source.table: read["frame"]}, notes=notes)

    try:
        return run_api_batch(request, fetch)
    except SchemaViolation as error:
        failures = error.failures if isinstance(error, FileRejected) else check_failures(request, read.get("frame"))
        report = {
            "source": source.name,
            "file": name,
            "sha256": read.get("sha256"),
            "bytes": read.get("bytes"),
            "rejected_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "run_id": request.run_id,
            "kind": error.kind,
            "reason": " ".join(str(error).split()),
            "failing_checks": [asdict(failure) for failure in failures],
        }
        moved = reject_file(path, report)
        run_logger().warning("%s: rejected, moved to %s with its report", request.label, moved)
        raise


def check_failures(request: BatchRequest, frame: pl.DataFrame | None) -> list[Failure]:
    """Every failing check of a frame against its table's model, for a rejection report."""
    if frame is None:
        return []
    [table] = request.source.tables.values()
    try:
        schema_for(table, expected_values(request)).validate(frame, lazy=True)
    except pandera_errors.SchemaErrors as error:
        found = collect_failures(error.failure_cases)
        return [Failure(column, check, count, tuple(examples)) for (column, check), (count, examples) in found.items()]
    return []


def combine(source: str, outcomes: list[BatchOutcome]) -> BatchOutcome:
    """The outcome of a run over several files: loaded if any file loaded, skipped if the circuit was open."""
    statuses = {outcome.status for outcome in outcomes}
    status = SKIPPED_CIRCUIT_OPEN if SKIPPED_CIRCUIT_OPEN in statuses else LOADED if LOADED in statuses else UNCHANGED
    rows: dict[str, int] = {}
    for outcome in outcomes:
        for table, count in outcome.rows_by_table.items():
            rows[table] = rows.get(table, 0) + count
    return BatchOutcome(
        instance=source,
        partition_key=f"{len(outcomes)} file(s)",
        status=status,
        rows_by_table=rows,
        bytes=sum(outcome.bytes for outcome in outcomes),
        duration_s=sum(outcome.duration_s for outcome in outcomes),
        error=next((outcome.error for outcome in outcomes if outcome.error), None),
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m flows.filedrop", description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="name of a file source declared in sources.yaml")
    parser.add_argument("--file", default=None, help="one file to ingest (absolute, or relative to the folder)")
    parser.add_argument("--config", default=None, help="the sources file (default: sources.yaml at the repo root)")
    args = parse_command_line(parser, argv)
    return run_flow_cli(lambda: ingest_file_drop(args.source, args.file, args.config))


if __name__ == "__main__":
    sys.exit(main())
