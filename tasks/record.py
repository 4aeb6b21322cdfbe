"""Record tasks: the run ledger's entries for one batch, and the run's artifact."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_table_artifact

from headwater.batch import BatchRequest
from headwater.ledger import RunRecord, open_ledger


@task(name="record-start", task_run_name="record start of {request.label}")
def record_start(request: BatchRequest, flow_run_id: str | None) -> None:
    """Insert the run's ledger row with status ``running``."""
    with open_ledger() as ledger:
        ledger.start_run(
            run_id=request.run_id,
            flow_run_id=flow_run_id,
            source=request.source.name,
            instance=request.instance,
            partition_key=request.partition_key,
        )


@task(name="check-unchanged", task_run_name="compare {request.label} with the loaded version")
def is_unchanged(request: BatchRequest, content_hash: str) -> bool:
    """True when the last loaded version of this partition has the same content hash."""
    with open_ledger() as ledger:
        current = ledger.current_version(request.instance, request.partition_key)
    return current is not None and current["content_hash"] == content_hash


@task(name="record-outcome", task_run_name="record {record.status} for {request.label}")
def record_outcome(request: BatchRequest, record: RunRecord) -> None:
    """Write the run's outcome to the ledger and leave a table artifact of it."""
    with open_ledger() as ledger:
        ledger.finish_run(request.run_id, record)
    rows = [
        {"table": table, "rows": count, "status": record.status, "batch_id": record.batch_id or ""}
        for table, count in sorted(record.rows_by_table.items())
    ] or [{"table": "-", "rows": 0, "status": record.status, "batch_id": record.batch_id or ""}]
    create_table_artifact(
        key=f"{request.instance}-last-batch".lower().replace("_", "-"),
        table=rows,
        description=f"{request.label}: {record.status}"
        + (f" ({record.error_kind}: {record.error})" if record.error else ""),
    )
