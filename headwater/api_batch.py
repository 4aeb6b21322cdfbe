"""API sources through the shared pipeline.

An API source fetches its responses, normalises them into one polars frame per table,
and this module writes those frames as Parquet files plus a META.json describing them
in the run's temp dir. From there the batch goes through exactly the pipeline the
checksummed exports use: verify, skip if unchanged (same content hash as the loaded
version), validate, load, record, cleanup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from prefect import task

from headwater.batch import BatchRequest
from headwater.http import DownloadedFile
from headwater.manifest import (
    MANIFEST_NAME,
    Manifest,
    Resource,
    build_manifest,
    parse_manifest,
    sha256_file,
    write_manifest,
)
from headwater.params import TASK_TIMEOUT_S
from headwater.pipeline import RunResult, run_batch
from headwater.tables import write_parquet


@dataclass
class FetchResult:
    """What an API fetch returns: a frame per table, and what it knows about the batch's quality.

    ``rows_rejected`` (e.g. quarantined out-of-range rows), ``quality_score`` (0..1) and
    ``notes`` (e.g. which providers failed and why) are written into the batch's
    META.json (``x-headwater``) and from there into the run ledger.
    """

    frames: dict[str, pl.DataFrame]
    rows_rejected: int | None = None
    quality_score: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    """Parts of the batch that failed (e.g. ``{"location 2178": "HTTP 500 …"}``); the rest is loaded
    and the run is recorded ``partial``. Empty when every part succeeded."""


Fetch = Callable[[], "dict[str, pl.DataFrame] | FetchResult"]


def describe_frames(request: BatchRequest, fetched: dict[str, pl.DataFrame] | FetchResult, directory: Path) -> Manifest:
    """Write each table's frame as Parquet in ``directory`` and a META.json describing them."""
    result = fetched if isinstance(fetched, FetchResult) else FetchResult(frames=fetched)
    directory.mkdir(parents=True, exist_ok=True)
    counts = {}
    quality = {
        k: v
        for k, v in (
            ("rows_rejected", result.rows_rejected),
            ("quality_score", result.quality_score),
            ("notes", result.notes or None),
            ("failures", result.failures or None),
        )
        if v is not None
    }
    for table, frame in result.frames.items():
        counts[table] = write_parquet(directory / f"{table}.parquet", request.source.table(table), [frame])
    document = build_manifest(
        directory,
        name=f"{request.instance}-{request.partition_key.replace('/', '-')}",
        source=request.source.name,
        partition=dict(request.partition),
        constants={**request.constants, **quality},
        tables=counts,
    )
    path = write_manifest(directory, document)
    return parse_manifest(f"{request.label}: {MANIFEST_NAME}", path.read_bytes())


@task(name="fetch-api-batch", task_run_name="fetch {request.label}", timeout_seconds=TASK_TIMEOUT_S)
def fetch_api_batch(request: BatchRequest, fetch: Fetch, workdir: Path) -> Manifest:
    """Fetch the source's responses and describe them as a batch (Parquet files + META.json)."""
    return describe_frames(request, fetch(), workdir / "files")


@task(name="hash-file", task_run_name="hash {resource.path} of {request.label}", timeout_seconds=TASK_TIMEOUT_S)
def hash_local_resource(request: BatchRequest, resource: Resource, workdir: Path) -> DownloadedFile:
    """A file this run wrote, measured like a download (size and SHA-256)."""
    path = workdir / "files" / resource.path
    return DownloadedFile(url=path.as_uri(), path=path, bytes=path.stat().st_size, sha256=sha256_file(path))


def run_api_batch(request: BatchRequest, fetch: Fetch) -> RunResult:
    """Run one API batch through the shared pipeline."""

    def fetch_manifest(req: BatchRequest, workdir: Path) -> Manifest:
        return fetch_api_batch(req, fetch, workdir)

    return run_batch(request, fetch_manifest, hash_local_resource)
