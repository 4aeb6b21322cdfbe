"""Catch-up policy: what a deployment does with the runs it missed during downtime.

After a worker or server outage Prefect runs every Late run of a deployment, oldest
first. Each source chooses:

- ``latest`` (default): only the newest of the due runs does the work. When a run of a
  deployment starts, every other due run of that deployment (scheduled or late, expected
  before now) that is older than the newest is cancelled with a message naming the run
  that supersedes it; if the starting run is itself superseded, it cancels itself.
  Right for snapshot sources: the newest run fetches everything the older ones would.
- ``all``: every run goes ahead. Right for sources whose every run carries its own
  partition, such as the SOT exports (one processing date per scheduled run).

Runs not started from a deployment (``python -m flows.…``) are never affected.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.context import FlowRunContext
from prefect.states import Cancelled

from headwater.logs import run_logger

LATEST, ALL = "latest", "all"
POLICIES = (LATEST, ALL)


@dataclass(frozen=True)
class CatchUpDecision:
    """Whether the current run goes ahead, and which runs were cancelled."""

    proceed: bool
    superseded_by: str | None
    cancelled: tuple[str, ...]


def _due_runs(deployment_id: UUID, now: datetime) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING])),
                expected_start_time=FlowRunFilterExpectedStartTime(before_=now),  # type: ignore[arg-type]
            )
        )


def _expected(run: FlowRun) -> datetime:
    return run.expected_start_time or run.created or datetime.min.replace(tzinfo=UTC)


def apply_catch_up(policy: str) -> CatchUpDecision:
    """Apply ``policy`` for the current deployment run; returns whether it should go ahead."""
    if policy not in POLICIES:
        raise ValueError(f"unknown catch-up policy {policy!r}; expected one of {', '.join(POLICIES)}")
    context = FlowRunContext.get()
    run = context.flow_run if context else None
    if policy == ALL or run is None or run.deployment_id is None:
        return CatchUpDecision(proceed=True, superseded_by=None, cancelled=())
    now = datetime.now(UTC)
    candidates = {r.id: r for r in _due_runs(run.deployment_id, now)}
    candidates[run.id] = run
    newest = max(candidates.values(), key=lambda r: (_expected(r), str(r.id)))
    cancelled = []
    with get_client(sync_client=True) as client:
        for other in candidates.values():
            if other.id in (newest.id, run.id):
                continue
            message = (
                f"catch-up policy 'latest': superseded by flow run {newest.id} "
                f"(expected {_expected(newest):%Y-%m-%d %H:%M} UTC)"
            )
            client.set_flow_run_state(other.id, Cancelled(message=message), force=True)
            cancelled.append(other.name)
    logger = run_logger()
    if cancelled:
        logger.info("catch-up policy 'latest': cancelled older due runs %s", ", ".join(cancelled))
    if newest.id != run.id:
        logger.info("catch-up policy 'latest': superseded by flow run %s; not running", newest.id)
        return CatchUpDecision(proceed=False, superseded_by=f"flow run {newest.id}", cancelled=tuple(cancelled))
    return CatchUpDecision(proceed=True, superseded_by=None, cancelled=tuple(cancelled))


def superseded_state(decision: CatchUpDecision) -> Cancelled:  # type: ignore[valid-type]
    """The final state of a run the policy superseded."""
    return Cancelled(message=f"catch-up policy 'latest': superseded by {decision.superseded_by}")


def scheduled_date() -> datetime | None:
    """When the current deployment run was scheduled to start (UTC), if it is one."""
    context = FlowRunContext.get()
    run = context.flow_run if context else None
    if run is None or run.deployment_id is None or run.expected_start_time is None:
        return None
    return run.expected_start_time.astimezone(UTC)
