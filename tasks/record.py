"""Record steps: the ledger entries of one batch and its artifact (plain calls; the outcome write retries itself)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from prefect.artifacts import create_markdown_artifact
from tenacity import Retrying, stop_after_attempt, wait_exponential_jitter

from blocks.ledger import open_ledger
from blocks.warehouse import ClickHouseWarehouse
from headwater import events
from headwater.batch import BatchRequest
from headwater.health import Gate, check_circuit, record_attempt
from headwater.ledger import PARTIAL, SUCCESSES, UNCHANGED, RunRecord
from headwater.logs import run_logger
from headwater.providers import served_by
from headwater.reconcile import loaded_version_problems, owner_id
from headwater.settings import get_settings


def ledger_write_retrying() -> Retrying:
    """Retries of the ledger write that records a run's outcome (a locked or unreachable ledger)."""
    return Retrying(
        stop=stop_after_attempt(get_settings().ledger_write_attempts),
        wait=wait_exponential_jitter(initial=0.5, max=10),
        before_sleep=lambda state: run_logger().warning(
            "ledger write failed (%s); retrying", state.outcome.exception() if state.outcome else None
        ),
        reraise=True,
    )


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


def record_start(request: BatchRequest, flow_run_id: str | None) -> None:
    """Insert the run's ledger row with status ``running``, owned by this process."""
    with open_ledger() as ledger:
        ledger.start_run(
            run_id=request.run_id,
            flow_run_id=flow_run_id,
            source=request.source.name,
            instance=request.instance,
            partition_key=request.partition_key,
            owner=owner_id(),
        )


def is_unchanged(request: BatchRequest, content_hash: str) -> bool:
    """True when the partition's loaded version has the same content hash *and* the warehouse holds it.

    The ledger alone is not trusted: a partition that does not hold exactly the loaded
    batch (rows lost or doubled, another batch beside it) is recorded ``repaired`` and
    loaded again.
    """
    with open_ledger() as ledger:
        current = ledger.current_version(request.instance, request.partition_key)
        if current is None or current["content_hash"] != content_hash:
            return False
        problems = warehouse_disagrees(request, current)
        if not problems:
            return True
        found = f"{request.label}: the warehouse does not hold the loaded version: {'; '.join(problems)}; reloading"
        ledger.record_repair(
            run_id=uuid.uuid4().hex,
            source=request.source.name,
            instance=request.instance,
            partition_key=request.partition_key,
            found=found,
            notes={"action": "reload", "found": problems, "batch_id": current["batch_id"]},
        )
    run_logger().warning("%s", found)
    events.emit(events.SOURCE_REPAIRED, request.instance, request.source.name, action="reload", found=problems)
    return False


def warehouse_disagrees(request: BatchRequest, version: Mapping[str, Any]) -> list[str]:
    """How the warehouse differs from a loaded version of the request's partition (empty: it agrees)."""
    with ClickHouseWarehouse.from_settings().session() as client:
        return loaded_version_problems(client, request.source, request.database, request.partition, version)


def record_outcome(request: BatchRequest, record: RunRecord, duration_s: float) -> None:
    """Write the run's outcome to the ledger, update the circuit, emit its events, leave its summary artifact."""
    with open_ledger() as ledger:
        for attempt in ledger_write_retrying():
            with attempt:
                ledger.finish_run(request.run_id, record)
        record_attempt(ledger, request.instance, request.source.name, record.status)
        if record.status in (*SUCCESSES, PARTIAL) and record.notes:
            # incremental cursors and the like advance only once the batch is loaded
            for key, value in (record.notes.get("state") or {}).items():
                ledger.set_state(request.instance, key, str(value))
    settings = get_settings()
    if record.status == PARTIAL:
        events.emit(
            events.RUN_PARTIAL,
            request.instance,
            request.source.name,
            failures=(record.notes or {}).get("failures"),
            batch_id=record.batch_id,
        )
    if record.quality_score is not None and record.quality_score < settings.quality_alert_threshold:
        events.emit(
            events.QUALITY_LOW,
            request.instance,
            request.source.name,
            quality_score=record.quality_score,
            threshold=settings.quality_alert_threshold,
            batch_id=record.batch_id,
        )
    if duration_s > settings.slow_run_s:
        run_logger().warning("%s took %.1f s (slow above %.0f s)", request.label, duration_s, settings.slow_run_s)
        events.emit(
            events.RUN_SLOW,
            request.instance,
            request.source.name,
            label=request.label,
            status=record.status,
            duration_s=round(duration_s, 1),
            threshold_s=settings.slow_run_s,
        )
    create_markdown_artifact(
        key=artifact_key(request.instance),
        markdown=batch_summary(request, record, duration_s),
        description=summary_line(request, record),
    )


def summary_line(request: BatchRequest, record: RunRecord) -> str:
    """The artifact's one line (its card in the UI): the reason of a failure, else status and rows."""
    if record.error:
        return f"{record.status}: {record.error}"
    return f"{request.label}: {record.status}, {sum(record.rows_by_table.values()):,} rows"


def artifact_key(instance: str) -> str:
    """The key of an instance's batch summaries (the Artifacts page shows the latest per key)."""
    return f"{instance}-last-batch".lower().replace("_", "-")


def batch_summary(request: BatchRequest, record: RunRecord, duration_s: float) -> str:
    """A run's outcome as markdown: status, reason, rows, bytes, duration, batch, provider, rows per table."""
    total = sum(record.rows_by_table.values())
    facts = [
        ("status", record.status + (f" ({record.error_kind})" if record.error_kind else "")),
        ("partition", request.partition_key),
        ("rows loaded", f"{total:,}"),
        ("bytes", f"{record.bytes or 0:,}"),
        ("duration", f"{duration_s:.1f} s"),
        ("batch", record.batch_id or "-"),
    ]
    if provider := provider_summary(record.notes):
        facts.append(("provider", provider))
    lines = [f"### {_cell(request.label)}: {record.status}", ""]
    if record.error:
        lines += [f"**Reason:** {_cell(record.error)}", ""]
    lines += ["| | |", "|---|---|", *(f"| {name} | {_cell(value)} |" for name, value in facts), ""]
    if record.rows_by_table:
        lines += ["| table | rows |", "|---|---:|"]
        lines += [f"| {_cell(table)} | {count:,} |" for table, count in sorted(record.rows_by_table.items())]
    else:
        lines.append(
            "Nothing loaded: unchanged since the loaded version."
            if record.status == UNCHANGED
            else "No table was loaded."
        )
    return "\n".join(lines) + "\n"


def provider_summary(notes: Mapping[str, Any] | None) -> str | None:
    """For a provider chain (fx, coffee): the provider that answered, and those that failed before it."""
    winner, failed = served_by(notes)
    if winner is None:
        return None
    first = "; ".join(f"{provider}: {error}" for provider, error in failed)
    return winner + (f" (failed first: {first})" if failed else "")


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell or heading: one line, no column separator."""
    return " ".join(str(text).split()).replace("|", "\\|")
