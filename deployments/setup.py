"""Work pools, queues and global concurrency limits as code.

``python -m deployments.setup`` creates or updates them; running it twice changes
nothing. The queues replace the Celery queues of the systems Headwater replaces (one
per vertical, plus ``sot`` and ``maintenance``); the ``headwater-warehouse-writes``
limit bounds how many runs publish into the warehouse at once (``load-batch`` takes a
slot), so a ClickHouse server is not swamped by every worker at 01:00. A queue's
description is derived from ``prefect.yaml``: what the deployments routed to it run.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from prefect import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
    WorkPoolCreate,
    WorkPoolUpdate,
)
from prefect.exceptions import ObjectNotFound
from prefect.workers.process import ProcessWorker

from blocks.warehouse import WAREHOUSE_WRITES
from headwater.settings import get_settings
from headwater.sources import DECLARED


@dataclass(frozen=True)
class QueueSpec:
    """A work queue of a pool (priorities are unique within a pool; 1 is served first).

    ``description`` is filled in from ``prefect.yaml`` (``describe_queues``), never by hand.
    """

    name: str
    priority: int
    concurrency_limit: int | None = None
    description: str = ""


@dataclass(frozen=True)
class PoolSpec:
    """A process work pool and its queues."""

    name: str
    description: str
    queues: tuple[QueueSpec, ...]
    concurrency_limit: int | None = None


POOLS = (
    PoolSpec(
        name="headwater",
        description="Headwater ingestion flows (process workers).",
        queues=(
            QueueSpec("sot", priority=1),
            QueueSpec("agriculture", priority=2),
            QueueSpec("realestate", priority=3),
            QueueSpec("employment", priority=4),
            QueueSpec("business", priority=5),
            QueueSpec("maintenance", priority=6, concurrency_limit=1),
            QueueSpec("environment", priority=7),
            QueueSpec("filedrop", priority=8, concurrency_limit=1),
            QueueSpec("catalog", priority=9),
        ),
    ),
)


GLOBAL_LIMITS: dict[str, int] = {WAREHOUSE_WRITES: 2}


CODE_DEPLOYED: dict[str, list[str]] = {"catalog": ["the catalog ingestors of ingestion.yaml", "catalog-watch"]}
"""Queues whose deployments are made by code, not listed in ``prefect.yaml`` (``deployments/catalog.py``)."""


def deployments_config(path: Path | None = None) -> list[dict[str, Any]]:
    """The deployments of ``prefect.yaml`` (``HEADWATER_PREFECT_YAML``)."""
    text = (path or get_settings().prefect_yaml).read_text()
    return list(yaml.safe_load(text).get("deployments") or [])


def what_runs(deployment: Mapping[str, Any]) -> str:
    """How a queue's description names a deployment: its source's title, a file source, or its name."""
    module = Path(str(deployment["entrypoint"]).split(":")[0]).stem
    declared = {source.name: source.title for source in DECLARED}
    if module in declared:
        return declared[module]
    if module == "filedrop":
        return f"{deployment['parameters']['source']} files"
    return str(deployment["name"])


def describe_queues(pools: tuple[PoolSpec, ...], deployments: list[dict[str, Any]]) -> tuple[PoolSpec, ...]:
    """The pools with each queue described by what its deployments run (``Runs World Bank, FAOSTAT``)."""
    described = []
    for pool in pools:
        queues = []
        for queue in pool.queues:
            routed = [
                what_runs(d)
                for d in deployments
                if d["work_pool"]["name"] == pool.name and d["work_pool"].get("work_queue_name") == queue.name
            ]
            routed += CODE_DEPLOYED.get(queue.name, [])
            text = "Runs " + ", ".join(dict.fromkeys(routed)) if routed else "No deployment routed here"
            queues.append(replace(queue, description=text))
        described.append(replace(pool, queues=tuple(queues)))
    return tuple(described)


def ensure_global_limits(limits: dict[str, int] = GLOBAL_LIMITS) -> list[str]:
    """Create or update the global concurrency limits; returns what changed."""
    changes: list[str] = []
    with get_client(sync_client=True) as client:
        for name, limit in limits.items():
            try:
                current = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=limit, active=True)
                )
                changes.append(f"created global concurrency limit {name} ({limit})")
                continue
            if (current.limit, current.active) != (limit, True):
                client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=limit, active=True))
                changes.append(f"updated global concurrency limit {name} ({limit})")
    return changes


def ensure_pools(pools: tuple[PoolSpec, ...] | None = None) -> list[str]:
    """Create or update every pool and queue (described from ``prefect.yaml``); returns what changed, one line each."""
    pools = pools or describe_queues(POOLS, deployments_config())
    changes: list[str] = []
    with get_client(sync_client=True) as client:
        for pool in pools:
            try:
                existing = client.read_work_pool(pool.name)
            except ObjectNotFound:
                client.create_work_pool(
                    WorkPoolCreate(
                        name=pool.name,
                        type="process",
                        description=pool.description,
                        base_job_template=ProcessWorker.get_default_base_job_template(),
                        concurrency_limit=pool.concurrency_limit,
                    )
                )
                changes.append(f"created work pool {pool.name}")
            else:
                if (existing.description, existing.concurrency_limit) != (
                    pool.description,
                    pool.concurrency_limit,
                ):
                    client.update_work_pool(
                        pool.name,
                        WorkPoolUpdate(description=pool.description, concurrency_limit=pool.concurrency_limit),
                    )
                    changes.append(f"updated work pool {pool.name}")
            for queue in pool.queues:
                try:
                    current = client.read_work_queue_by_name(queue.name, work_pool_name=pool.name)
                except ObjectNotFound:
                    client.create_work_queue(
                        name=queue.name,
                        description=queue.description,
                        priority=queue.priority,
                        concurrency_limit=queue.concurrency_limit,
                        work_pool_name=pool.name,
                    )
                    changes.append(f"created queue {pool.name}/{queue.name}")
                    continue
                wanted = (queue.priority, queue.concurrency_limit, queue.description)
                if (current.priority, current.concurrency_limit, current.description or "") != wanted:
                    client.update_work_queue(
                        current.id,
                        priority=queue.priority,
                        concurrency_limit=queue.concurrency_limit,
                        description=queue.description,
                    )
                    changes.append(f"updated queue {pool.name}/{queue.name}")
    return changes


def main() -> int:
    """Apply the pools and queues and print what changed."""
    changes = ensure_pools() + ensure_global_limits()
    print("\n".join(changes) if changes else "work pools, queues and limits are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
