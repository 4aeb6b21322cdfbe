"""Reconcile step: every run of an instance starts by bringing warehouse and ledger into agreement."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Mapping
from typing import Any

from blocks.ledger import open_ledger
from blocks.warehouse import ClickHouseWarehouse
from headwater import events
from headwater.batch import BatchRequest, run_tag
from headwater.health import record_attempt
from headwater.ledger import FAILED, INTENT_ABANDONED, INTENT_PUBLISHED, INTENT_UNDONE, Ledger
from headwater.loading import drop_run_tables
from headwater.logs import run_logger
from headwater.reconcile import RepairError, is_dead, repair_intent
from headwater.settings import get_settings


def _mark_crashed_runs(ledger: Ledger, request: BatchRequest) -> tuple[list[str], set[str]]:
    """Fail the instance's ``running`` rows whose process is gone; returns their run ids and the live ones."""
    crashed, live = [], set()
    for row in ledger.running_runs(request.instance):
        reason = is_dead(row)
        if reason is None:
            live.add(row["run_id"])
            continue
        message = f"{request.instance}: run {row['run_id'][:12]} crashed without recording an outcome ({reason})"
        ledger.mark_crashed(row["run_id"], message)
        record_attempt(ledger, request.instance, request.source.name, FAILED)
        events.emit(events.RUN_CRASHED, request.instance, request.source.name, run_id=row["run_id"], reason=reason)
        run_logger().warning("%s", message)
        crashed.append(row["run_id"])
    return crashed, live


def _abandon(ledger: Ledger, request: BatchRequest, intent: Mapping[str, Any], error: RepairError) -> None:
    """Close an intent that cannot be repaired, so it does not block every later run.

    Recorded ``failed`` (kind ``repair_failed``) with what was found; the partition stays
    marked damaged (health, the sweep and the unchanged check read the warehouse) until a
    load replaces it, which the run going on now does when it is the same partition.
    """
    ledger.record_repair(
        run_id=uuid.uuid4().hex,
        source=request.source.name,
        instance=request.instance,
        partition_key=intent["partition_key"],
        found=str(error),
        notes={"repaired_run": intent["run_id"], "action": "abandoned"},
        error_kind=error.kind,
    )
    ledger.resolve_intent(intent["run_id"], INTENT_ABANDONED, str(error))
    events.emit(events.SOURCE_REPAIRED, request.instance, request.source.name, action="abandoned", found=[str(error)])
    run_logger().error("%s", error)


def reconcile_instance(request: BatchRequest) -> list[str]:
    """Detect crashed runs and repair unfinished publishes of the instance; returns what was repaired.

    Crashed runs become ``failed`` (kind ``crashed``, counted by the circuit breaker);
    each open publish intent is finished or undone from the warehouse's state and
    recorded ``repaired``; the dead runs' staging tables and temp dirs are removed.
    Opens the warehouse only when there is something to repair.
    """
    with open_ledger() as ledger:
        crashed, live = _mark_crashed_runs(ledger, request)
        intents = [i for i in ledger.pending_intents(request.instance) if i["run_id"] not in live]
        if not crashed and not intents:
            return []
        summaries = []
        with ClickHouseWarehouse.from_settings().session() as client:
            for intent in intents:
                try:
                    repair = repair_intent(client, intent, request.instance)
                except RepairError as error:
                    _abandon(ledger, request, intent, error)
                    continue
                state = INTENT_PUBLISHED if repair.version else INTENT_UNDONE
                ledger.record_repair(
                    run_id=uuid.uuid4().hex,
                    source=request.source.name,
                    instance=request.instance,
                    partition_key=intent["partition_key"],
                    found=repair.summary(),
                    notes={"repaired_run": intent["run_id"], "action": repair.action, "found": repair.found},
                    version=repair.version,
                )
                ledger.resolve_intent(intent["run_id"], state, f"repaired: {repair.action}")
                events.emit(
                    events.SOURCE_REPAIRED,
                    request.instance,
                    request.source.name,
                    run_id=intent["run_id"],
                    action=repair.action,
                    found=repair.found,
                )
                run_logger().warning("%s", repair.summary())
                summaries.append(repair.summary())
            for run_id in {*crashed, *(i["run_id"] for i in intents)}:
                dropped = drop_run_tables(client, request.database, run_tag(run_id))
                shutil.rmtree(get_settings().tmp_dir / f"{request.instance}-{run_tag(run_id)}", ignore_errors=True)
                if dropped:
                    run_logger().info("dropped the tables a dead run left: %s", ", ".join(dropped))
    return summaries
