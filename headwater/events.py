"""Prefect events Headwater emits; automations (deployments/automations.py) react to them.

Every event's resource is the source instance: ``headwater.source.<instance>``.
"""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event

CIRCUIT_OPENED = "headwater.circuit.opened"
CIRCUIT_HALF_OPEN = "headwater.circuit.half_open"
CIRCUIT_CLOSED = "headwater.circuit.closed"
SOURCE_FAILING = "headwater.source.failing"
SOURCE_STALE = "headwater.source.stale"
SOURCE_RECOVERED = "headwater.source.recovered"
QUALITY_LOW = "headwater.quality.low"
RUN_PARTIAL = "headwater.run.partial"
SOURCE_REPAIRED = "headwater.source.repaired"
RUN_CRASHED = "headwater.run.crashed"
FILEDROP_ARRIVED = "headwater.filedrop.arrived"
CATALOG_FEED_CHANGED = "headwater.catalog.feed.changed"


def resource_id(instance: str) -> str:
    """The Prefect resource id of a source instance."""
    return f"headwater.source.{instance}"


def emit(event: str, instance: str, source: str, **payload: Any) -> None:
    """Emit ``event`` about ``instance`` with ``payload``."""
    emit_event(
        event=event,
        resource={
            "prefect.resource.id": resource_id(instance),
            "prefect.resource.name": instance,
            "headwater.source": source,
        },
        payload=payload,
    )
