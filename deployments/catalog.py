"""One deployment per catalog ingestor, from ``ingestion.yaml``: ``python -m deployments.catalog [--config PATH]``.

Adding an ingestor means adding lines to the file and running this command: it creates
or updates ``catalog-<name>`` (the ingestor's cron, UTC, on the ``catalog`` queue) with
the automation ``headwater-catalog-<name>`` that runs it when ``catalog-watch`` reports
its feed changed, keeps ``catalog-watch`` itself (every
``HEADWATER_CATALOG_CHECK_INTERVAL_MIN`` minutes) and the daily ``catalog-cleanup``, and deletes the deployments and
automations of entries that were removed. A bad file is a one-line error and changes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from prefect import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.flows import load_flow_from_entrypoint

from deployments.automations import CATALOG_PREFIX, apply, build_catalog_trigger
from deployments.setup import ensure_pools
from headwater.catalog.config import load_ingestion
from headwater.cli import report_error
from headwater.settings import get_settings

ENTRYPOINT = "flows/catalog.py:ingest_catalog"
WATCH_ENTRYPOINT = "flows/catalog_watch.py:watch_catalog_feeds"
WATCH_NAME = "catalog-watch"
CLEANUP_ENTRYPOINT = "flows/catalog_cleanup.py:clean_catalog"
CLEANUP_NAME, CLEANUP_CRON = "catalog-cleanup", "45 2 * * *"  # daily, UTC
FLOW_NAME = "ingest-catalog"
POOL, QUEUE = "headwater", "catalog"
TAGS = ["headwater", "source", "catalog"]
PROJECT = Path(__file__).resolve().parents[1]
# As prefect.yaml's pool anchor, plus the working directory `prefect deploy` sets for its deployments.
JOB_VARIABLES = {"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}, "working_dir": str(PROJECT)}


def ensure_catalog_deployments(config: Path | None = None) -> list[str]:
    """Create, update or delete the ``catalog-*`` deployments so they match the file; returns what changed."""
    path = (config or get_settings().ingestion_config).resolve()
    ingestors = load_ingestion(path)  # validated first: a bad file deploys nothing
    flow: Any = load_flow_from_entrypoint(ENTRYPOINT)
    changes = ensure_pools()  # the pool and its catalog queue
    for ingestor in ingestors.values():
        deployment = flow.to_deployment(
            name=ingestor.instance,
            cron=ingestor.schedule,
            parameters={"ingestor": ingestor.name, "config": str(path)},
            tags=TAGS,
            description=f"Catalog ingestor {ingestor.name} of {path.name}: registry, feed, vectors.",
            concurrency_limit=1,
            work_pool_name=POOL,
            work_queue_name=QUEUE,
            job_variables=JOB_VARIABLES,
        )
        deployment.apply()
        changes.append(f"applied deployment {ingestor.instance} ({ingestor.schedule})")
    wanted = {i.instance for i in ingestors.values()}
    with get_client(sync_client=True) as client:
        existing = client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])))
        for stale in existing:
            if stale.name not in wanted:
                client.delete_deployment(stale.id)
                changes.append(f"deleted deployment {stale.name} (not in {path.name})")
            elif change := apply(build_catalog_trigger(stale.name, stale.id)):
                changes.append(change)
        for automation in client.read_automations():
            name = automation.name.removeprefix(CATALOG_PREFIX)
            if automation.name.startswith(CATALOG_PREFIX) and f"catalog-{name}" not in wanted:
                client.delete_automation(automation.id)
                changes.append(f"deleted automation {automation.name} (not in {path.name})")
    interval = get_settings().catalog_check_interval_min
    changes.append(
        apply_maintenance(
            WATCH_ENTRYPOINT,
            WATCH_NAME,
            f"*/{interval} * * * *",
            path,
            f"Probes the feeds of {path.name} every {interval} minutes; emits headwater.catalog.feed.changed.",
        )
    )
    changes.append(
        apply_maintenance(
            CLEANUP_ENTRYPOINT,
            CLEANUP_NAME,
            CLEANUP_CRON,
            path,
            "Daily: removes expired soft-deleted products, orphaned rows and the data of removed ingestors.",
        )
    )
    return changes


def apply_maintenance(entrypoint: str, name: str, cron: str, path: Path, description: str) -> str:
    """Create or update one of the catalog's own deployments (the watch, the cleanup) for the file."""
    maintenance: Any = load_flow_from_entrypoint(entrypoint)
    maintenance.to_deployment(
        name=name,
        cron=cron,
        parameters={"config": str(path)},
        tags=["headwater", "maintenance"],
        description=description,
        concurrency_limit=1,
        work_pool_name=POOL,
        work_queue_name=QUEUE,
        job_variables=JOB_VARIABLES,
    ).apply()
    return f"applied deployment {name} ({cron})"


def main(argv: list[str] | None = None) -> int:
    """Apply the file and print what changed; exit 2 on a bad file."""
    parser = argparse.ArgumentParser(prog="python -m deployments.catalog", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None, help="ingestion.yaml (default HEADWATER_INGESTION_CONFIG)")
    args = parser.parse_args(argv)
    try:
        changes = ensure_catalog_deployments(args.config)
    except Exception as error:  # one line; details in the logs
        return report_error(error)
    print("\n".join(changes) if changes else "no catalog ingestors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
