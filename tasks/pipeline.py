"""The shared batch pipeline every source goes through.

manifest → verify → skip if unchanged → download, and stage and check each file as it
arrives → publish → record → cleanup. A source supplies only how to get its manifest
and its files; the rest is here.

Only the steps that gain from being Prefect tasks are tasks: the downloads (retries,
visibility, one thread per file) and the load (visibility). The ledger reads and
writes, the circuit breaker, reconciliation, verification and cleanup are plain calls
logged through the run logger: each task run costs round trips to the Prefect API,
and a run that finds its source unchanged should cost one request and one ledger read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path

from prefect.context import FlowRunContext

from blocks.ledger import get_ledger
from blocks.warehouse import ClickHouseWarehouse
from headwater.batch import BatchRequest
from headwater.catchup import apply_catch_up, superseded_state
from headwater.errors import HeadwaterError
from headwater.faults import checkpoint
from headwater.http import DownloadedFile
from headwater.ledger import FAILED, LOADED, PARTIAL, SKIPPED_CIRCUIT_OPEN, UNCHANGED, RunRecord
from headwater.logs import run_logger
from headwater.manifest import Manifest, Resource
from headwater.outcome import BatchOutcome, RunResult
from headwater.reconcile import lease
from headwater.settings import get_settings
from tasks.cleanup import cleanup_run
from tasks.load import load_batch
from tasks.reconcile import reconcile_instance
from tasks.record import check_gate, is_unchanged, record_outcome, record_start
from tasks.verify import verify_file, verify_manifest

FetchManifest = Callable[[BatchRequest, Path], Manifest]
FetchFiles = Callable[[BatchRequest, tuple[Resource, ...], Path], Iterable[tuple[Resource, DownloadedFile]]]


def _flow_run_id() -> str | None:
    context = FlowRunContext.get()
    return str(context.flow_run.id) if context and context.flow_run else None


def make_workdir(request: BatchRequest) -> Path:
    """The run's own temp dir under ``<home>/tmp``."""
    workdir = get_settings().tmp_dir / f"{request.instance}-{request.tag}"
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def verified_files(
    request: BatchRequest, downloads: Iterable[tuple[Resource, DownloadedFile]]
) -> Iterator[tuple[str, Path]]:
    """``(table, path)`` of each file as it is downloaded and verified against the manifest.

    Stopped early (a file fails verification, the load fails or is closed), it closes
    ``downloads``, whose downloads then end before the run's directory is removed.
    """
    try:
        for resource, downloaded in downloads:
            verify_file(request, resource, downloaded)
            yield resource.name, downloaded.path
    finally:
        if isinstance(downloads, Generator):
            downloads.close()
    checkpoint("downloaded")


def run_batch(request: BatchRequest, fetch_manifest: FetchManifest, fetch_files: FetchFiles) -> RunResult:
    """Run one batch through the pipeline; raise the batch's error after recording it.

    A deployment run that the source's catch-up policy supersedes returns a Cancelled
    state saying by which run, and does nothing else.
    """
    started = time.monotonic()
    decision = apply_catch_up(request.source.catch_up)
    if not decision.proceed:
        return superseded_state(decision)
    reconcile_instance(request)
    gate = check_gate(request, _flow_run_id())
    if not gate.allowed:
        return BatchOutcome(
            instance=request.instance,
            partition_key=request.partition_key,
            status=SKIPPED_CIRCUIT_OPEN,
            error=gate.reason,
        )
    with lease(request.run_id, lambda: get_ledger().heartbeat(request.run_id), get_settings().run_lease_s / 4):
        record_start(request, _flow_run_id())
        record = _run_stages(request, fetch_manifest, fetch_files, started)
    return BatchOutcome(
        instance=request.instance,
        partition_key=request.partition_key,
        status=record.status,
        batch_id=record.batch_id,
        rows_by_table=record.rows_by_table,
        bytes=record.bytes or 0,
        duration_s=time.monotonic() - started,
        error=record.error if record.status == PARTIAL else None,
    )


def _run_stages(
    request: BatchRequest, fetch_manifest: FetchManifest, fetch_files: FetchFiles, started: float
) -> RunRecord:
    """Download, verify, compare, validate, load; then always clean up and record the outcome.

    ``started`` is the run's ``time.monotonic()`` at its start: the outcome's duration
    (artifact, slow-run event) counts from there.
    """
    logger = run_logger()
    workdir = make_workdir(request)
    warehouse: ClickHouseWarehouse | None = None
    record = RunRecord(status=FAILED)
    try:
        manifest = fetch_manifest(request, workdir)
        record.manifest_hash = manifest.content_hash
        resources = verify_manifest(request, manifest)
        record.bytes = sum(r.bytes for r in resources)
        record.rows_fetched = sum(r.rows for r in resources)
        record.rows_rejected = manifest.constants.get("rows_rejected")
        record.quality_score = manifest.constants.get("quality_score")
        record.notes = manifest.constants.get("notes")
        failures = manifest.constants.get("failures")
        for extra in ("failures", "stats"):
            if manifest.constants.get(extra):
                record.notes = {**(record.notes or {}), extra: manifest.constants[extra]}
        if is_unchanged(request, manifest.content_hash):
            record.status = UNCHANGED
            record.batch_id = request.batch_id(manifest.content_hash)
            logger.info("%s unchanged since the last load (%s)", request.label, manifest.content_hash[:16])
        else:
            warehouse = ClickHouseWarehouse.from_settings()
            warehouse.preload()
            files = verified_files(request, fetch_files(request, resources, workdir))
            loaded = load_batch(request, manifest, files, warehouse)
            warehouse = None  # the load dropped its staging and backup tables on its way out
            record.rows_by_table = loaded.rows_by_table
            record.rows_deduplicated = sum(loaded.deduplicated.values()) if loaded.deduplicated else None
            record.batch_id = request.batch_id(manifest.content_hash)
            record.status = PARTIAL if failures else LOADED
            if failures:
                record.error_kind = "partial"
                record.error = f"{request.label}: loaded the rest; failed: " + "; ".join(
                    f"{part}: {reason}" for part, reason in sorted(failures.items())
                )
    except HeadwaterError as error:
        record.status = FAILED
        record.error_kind = error.kind
        record.error = str(error)
        raise
    except Exception as error:
        record.status = FAILED
        record.error_kind = "unexpected"
        record.error = f"{request.label}: {type(error).__name__}: {error}"
        raise
    finally:
        try:
            cleanup_run(request, workdir, warehouse)
        finally:
            record_outcome(request, record, time.monotonic() - started)
    return record
