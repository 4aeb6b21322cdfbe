"""Prefect events Headwater emits; automations (deployments/automations.py) react to them.

Every event's resource is the source instance: ``headwater.source.<instance>``, with
the source's name (``headwater.source``) and the event's severity
(``headwater.severity``: ``info``, ``warning`` or ``critical``) as labels. The severity
is decided per event type, in :data:`SEVERITIES`, the one table of it; the alerts show
it and can be limited to a minimum (``HEADWATER_ALERT_MIN_SEVERITY``).
"""

from __future__ import annotations

from typing import Any, Literal

from prefect.events import emit_event

CIRCUIT_OPENED = "headwater.circuit.opened"
CIRCUIT_HALF_OPEN = "headwater.circuit.half_open"
CIRCUIT_CLOSED = "headwater.circuit.closed"
SOURCE_FAILING = "headwater.source.failing"
SOURCE_STALE = "headwater.source.stale"
SOURCE_RECOVERED = "headwater.source.recovered"
QUALITY_LOW = "headwater.quality.low"
RUN_PARTIAL = "headwater.run.partial"
RUN_SLOW = "headwater.run.slow"
SOURCE_REPAIRED = "headwater.source.repaired"
RUN_CRASHED = "headwater.run.crashed"
FILEDROP_ARRIVED = "headwater.filedrop.arrived"
CATALOG_FEED_CHANGED = "headwater.catalog.feed.changed"
PROVIDERS_DISAGREE = "headwater.providers.disagree"
"""Emitted by ``headwater.providers`` (which names it too): two providers' values differ beyond the tolerance."""

Severity = Literal["info", "warning", "critical"]
INFO: Severity = "info"
WARNING: Severity = "warning"
CRITICAL: Severity = "critical"
SEVERITY_ORDER: tuple[Severity, ...] = (INFO, WARNING, CRITICAL)
"""The legacy alert levels, least severe first."""

SEVERITY_LABEL = "headwater.severity"
"""The resource label that carries an event's severity."""

SEVERITIES: dict[str, Severity] = {
    CIRCUIT_OPENED: CRITICAL,  # the source's runs are skipped until the cooldown ends
    RUN_CRASHED: CRITICAL,  # a process died mid-run
    SOURCE_STALE: CRITICAL,  # the data is older than twice its cadence
    SOURCE_FAILING: WARNING,  # 3+ failures in a row, the circuit still closed
    QUALITY_LOW: WARNING,
    RUN_PARTIAL: WARNING,
    RUN_SLOW: WARNING,  # the legacy "response time over 60 s"
    SOURCE_REPAIRED: WARNING,  # the warehouse disagreed with the ledger; fixed
    PROVIDERS_DISAGREE: WARNING,
    CIRCUIT_HALF_OPEN: INFO,
    CIRCUIT_CLOSED: INFO,
    SOURCE_RECOVERED: INFO,
    FILEDROP_ARRIVED: INFO,
    CATALOG_FEED_CHANGED: INFO,
}
"""Each Headwater event's severity: the one place it is decided."""

FLOW_RUN_FAILED_SEVERITY: Severity = CRITICAL
"""The severity of Prefect's own ``prefect.flow-run.Failed`` / ``Crashed`` alerts."""


def severity_of(event: str) -> Severity:
    """The severity of ``event`` (``warning`` for an event the table does not name)."""
    return SEVERITIES.get(event, WARNING)


def severities_from(minimum: Severity) -> list[Severity]:
    """The severities at or above ``minimum``, least severe first."""
    return list(SEVERITY_ORDER[SEVERITY_ORDER.index(minimum) :])


def resource_id(instance: str) -> str:
    """The Prefect resource id of a source instance."""
    return f"headwater.source.{instance}"


def emit(event: str, instance: str, source: str, **payload: Any) -> None:
    """Emit ``event`` about ``instance`` with ``payload``; the resource carries the event's severity."""
    emit_event(
        event=event,
        resource={
            "prefect.resource.id": resource_id(instance),
            "prefect.resource.name": instance,
            "headwater.source": source,
            SEVERITY_LABEL: severity_of(event),
        },
        payload=payload,
    )
