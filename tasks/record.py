"""Record tasks: the run ledger's entries for one batch, and the run's artifact."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_table_artifact

from headwater import events
from headwater.batch import BatchRequest
from headwater.health import Gate, check_circuit, record_attempt
from headwater.ledger import SUCCESSES, RunRecord, open_ledger
from headwater.logs import run_logger
from headwater.settings import get_settings


@task(name="check-circuit", task_run_name="check the circuit of {request.instance}")
def check_gate(request: BatchRequest, flow_run_id: str | None) -> Gate:
    """Consult the instance's circuit breaker; a refused run is recorded ``skipped_circuit_open``."""
    with open_ledger() as ledger:
        gate = check_circuit(ledger, request.instance, request.source.name)
        if not gate.allowed:
            ledger.record_skip(
                run_id=request.run_id,
                flow_run_id=flow_run_id,
                source=request.source.name,
                instance=request.instance,
                partition_key=request.partition_key,
                reason=gate.reason,
            )
            run_logger().warning("skipped: %s", gate.reason)
        elif gate.probe:
            run_logger().info("%s: half-open circuit, this run is the probe", request.instance)
    return gate


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
    """Write the run's outcome to the ledger, update the circuit, leave a table artifact of it."""
    with open_ledger() as ledger:
        ledger.finish_run(request.run_id, record)
        record_attempt(ledger, request.instance, request.source.name, record.status)
        if record.status in SUCCESSES and record.notes:
            # incremental cursors and the like advance only once the batch is loaded
            for key, value in (record.notes.get("state") or {}).items():
                ledger.set_state(request.instance, key, str(value))
    if record.quality_score is not None and record.quality_score < get_settings().quality_alert_threshold:
        events.emit(
            events.QUALITY_LOW,
            request.instance,
            request.source.name,
            quality_score=record.quality_score,
            threshold=get_settings().quality_alert_threshold,
            batch_id=record.batch_id,
        )
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
