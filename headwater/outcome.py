"""What a source flow returns: the batch's outcome, or the Cancelled state of a superseded run."""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect.client.schemas.objects import State


@dataclass
class BatchOutcome:
    """What a pipeline run did, as returned by a flow."""

    instance: str
    partition_key: str
    status: str
    batch_id: str | None = None
    rows_by_table: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    duration_s: float = 0.0
    error: str | None = None


RunResult = BatchOutcome | State
"""What a source flow returns: the batch's outcome, or the Cancelled state of a superseded run."""


def status_of(result: RunResult) -> str:
    """A run result's status: the batch's, or ``superseded`` for a cancelled catch-up run."""
    return result.status if isinstance(result, BatchOutcome) else "superseded"
