"""Fetch tasks of API sources: call the source's fetch, describe its frames as a batch, hash the files.

From there the batch goes through exactly the pipeline the checksummed exports use.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from headwater.api_batch import Fetch, describe_frames
from headwater.batch import BatchRequest
from headwater.http import DownloadedFile
from headwater.manifest import Manifest, Resource, sha256_file
from headwater.outcome import RunResult
from headwater.params import TASK_TIMEOUT_S
from tasks.pipeline import run_batch


@task(
    name="fetch-api-batch",
    task_run_name="fetch {request.label}",
    timeout_seconds=TASK_TIMEOUT_S,
    cache_policy=NO_CACHE,  # a fetch always asks the upstream; its inputs (a closure) are not hashable anyway
)
def fetch_api_batch(request: BatchRequest, fetch: Fetch, workdir: Path) -> Manifest:
    """Fetch the source's responses and describe them as a batch (Parquet files + META.json)."""
    return describe_frames(request, fetch(), workdir / "files")


def local_resources(
    request: BatchRequest, resources: tuple[Resource, ...], workdir: Path
) -> Iterator[tuple[Resource, DownloadedFile]]:
    """The files this run wrote, measured like downloads (size and SHA-256); no task: nothing to retry."""
    for resource in resources:
        path = workdir / "files" / resource.path
        yield (
            resource,
            DownloadedFile(url=path.as_uri(), path=path, bytes=path.stat().st_size, sha256=sha256_file(path)),
        )


def run_api_batch(request: BatchRequest, fetch: Fetch) -> RunResult:
    """Run one API batch through the shared pipeline."""

    def fetch_manifest(req: BatchRequest, workdir: Path) -> Manifest:
        return fetch_api_batch(req, fetch, workdir)

    return run_batch(request, fetch_manifest, local_resources)
