"""Load task: stage every table of the batch, check it in the engine against its contract, publish atomically."""

from __future__ import annotations

from collections.abc import Generator, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from itertools import chain
from pathlib import Path

from clickhouse_connect.driver.client import Client
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency

from blocks.ledger import open_ledger
from blocks.warehouse import WAREHOUSE_WRITES, ClickHouseWarehouse
from headwater.batch import BatchRequest
from headwater.errors import IntegrityError
from headwater.faults import checkpoint
from headwater.loading import (
    StagedTable,
    drop_run_tables,
    ensure_database,
    ensure_table,
    plan_publish,
    publish,
    stage_checked,
    stage_concurrently,
    staging_table_name,
)
from headwater.logs import run_logger
from headwater.manifest import Manifest
from headwater.params import TASK_TIMEOUT_S
from headwater.settings import get_settings
from headwater.validation import expected_values


def _publish(
    client: Client, request: BatchRequest, manifest: Manifest, staged: list[StagedTable], batch_id: str
) -> dict[str, int]:
    """Create missing targets, back up, write the publish intent, swap; returns rows deduplicated per merge table."""
    database, partition_by = request.database, request.source.partition_columns
    for item in staged:  # targets appear only once every table of the batch passed its checks
        ensure_table(client, database, request.source.table(item.table), partition_by)
    plans, deduplicated = plan_publish(
        client,
        database=database,
        staged=staged,
        partition=request.partition,
        partition_by=partition_by,
        tag=request.tag,
    )
    with open_ledger() as ledger:
        ledger.record_intent(
            run_id=request.run_id,
            instance=request.instance,
            partition_key=request.partition_key,
            batch_id=batch_id,
            content_hash=manifest.content_hash,
            plan={
                "database": database,
                "tables": [plan.as_json() for plan in plans],
                "bytes": sum(manifest.resource(item.table).bytes for item in staged),
            },
        )
    publish(client, source=request.label, database=database, plans=plans)
    return deduplicated


def ingest_mode(warehouse: ClickHouseWarehouse) -> str:
    """'file' (engine reads the file) for embedded chDB, 'arrow' for a server, unless set."""
    mode = get_settings().warehouse_ingest
    if mode == "auto":
        return "file" if warehouse.embedded else "arrow"
    return mode


@dataclass(frozen=True)
class LoadResult:
    """Rows loaded per table, and per merge-mode table the rows that replaced existing keys."""

    rows_by_table: dict[str, int]
    deduplicated: dict[str, int]


@task(
    name="load-batch",
    task_run_name="load {request.label}",
    timeout_seconds=TASK_TIMEOUT_S,
    cache_policy=NO_CACHE,  # a load publishes; and its files arrive as an iterator, which has no key
    retries=0,  # a retry would find the iterator of files used up; the next run loads the batch again
)
def load_batch(
    request: BatchRequest, manifest: Manifest, files: Iterable[tuple[str, Path]], warehouse: ClickHouseWarehouse
) -> LoadResult:
    """Stage each table in full, check it against its contract (rows, checks, keys), then publish the partition.

    ``files`` yields ``(table, verified local file)`` as the downloads finish: each table
    is staged as soon as its file is there, while the others still download (so the
    download task runs appear under this one, and its time limit covers them); the
    warehouse session (and, embedded, its lock or, against a server, a write slot) is
    taken when the first file is ready and held while the rest download. Nothing is
    visible in a target table before publish, which waits for every table; staging and
    backup tables are dropped whatever happens, and ``files`` is closed, so no download
    outlives the load. Returns rows per table.
    """
    logger = run_logger()
    batch_id = request.batch_id(manifest.content_hash)
    database = request.database
    partition_by = request.source.partition_columns
    mode = ingest_mode(warehouse)
    settings = get_settings()
    # Against a server, a slot of the global limit `python -m deployments.setup` creates (no limit
    # when absent); embedded chDB is already serialised by the warehouse lock.
    slot = nullcontext() if warehouse.embedded else concurrency(WAREHOUSE_WRITES, occupy=1, strict=False)
    expected = expected_values(request)

    def stage(table: str, path: Path, client: Client) -> StagedTable:
        item = stage_checked(
            client,
            source=request.label,
            database=database,
            spec=request.source.table(table),
            partition_by=partition_by,
            staging=staging_table_name(table, request.tag),
            path=path,
            batch_id=batch_id,
            mode=mode,
            expected=expected,
            batch_rows=settings.validation_batch_rows,
        )
        listed = manifest.resource(table).rows
        if item.rows != listed:
            raise IntegrityError(
                f"{request.label}: {path.name}",
                f"row count mismatch after staging: expected {listed}, found {item.rows}",
            )
        logger.info("staged %s rows of %s (%s)", item.rows, table, mode)
        checkpoint("table-staged")  # the batch's other tables may still be staging
        return item

    tables = request.ingested_tables
    positions = {resource.name: i for i, resource in enumerate(manifest.resources)}
    arriving = iter(files)
    try:
        first = next(arriving, None)  # the warehouse lock is not held while the first file downloads
        threads = max(1, min(settings.load_threads, len(tables)))
        with slot, warehouse.sessions(threads) as clients:
            client = clients[0]
            try:
                ensure_database(client, database)
                ready = chain([first] if first is not None else [], arriving)
                jobs = ((positions[table], partial(stage, table, path)) for table, path in ready)
                staged = stage_concurrently(clients, jobs)
                missing = sorted(set(tables) - {item.table for item in staged})
                if missing:
                    raise IntegrityError(request.label, f"expected every table of {tables} staged, missing {missing}")
                checkpoint("staged")
                deduplicated = _publish(client, request, manifest, staged, batch_id)
                checkpoint("published")
            finally:
                drop_run_tables(client, database, request.tag)
    finally:
        if isinstance(arriving, Generator):
            arriving.close()  # its downloads end before the run's directory is removed
    logger.info("published %s as %s", request.label, batch_id)
    return LoadResult({item.table: item.rows for item in staged}, deduplicated)
