"""Download tasks: META.json and each listed file, streamed to the run's temp dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prefect import task
from prefect.futures import as_completed, wait
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_fixed

from headwater.batch import BatchRequest
from headwater.errors import IntegrityError, ManifestError, NotFoundError
from headwater.http import DownloadedFile, download_file
from headwater.logs import run_logger
from headwater.manifest import MANIFEST_NAME, Manifest, Resource, parse_manifest
from headwater.params import TASK_TIMEOUT_S
from headwater.settings import get_settings


def export_file_url(export_url: str, path: str) -> str:
    """URL of a file of the export (``path`` is relative and already checked)."""
    return f"{export_url.rstrip('/')}/{path}"


def _waiting_for_manifest(label: str, url: str) -> Retrying:
    """Retry a 404 on META.json (export not published yet): ``manifest_wait_attempts`` more tries."""
    settings = get_settings()
    tries = settings.manifest_wait_attempts + 1

    def log_wait(state: RetryCallState) -> None:
        run_logger().info(
            "%s: %s not published yet (HTTP 404 at %s); try %d of %d in %gs",
            label,
            MANIFEST_NAME,
            url,
            state.attempt_number + 1,
            tries,
            settings.manifest_wait_s,
        )

    return Retrying(
        retry=retry_if_exception_type(NotFoundError),
        stop=stop_after_attempt(tries),
        wait=wait_fixed(settings.manifest_wait_s),
        before_sleep=log_wait,
        reraise=True,
    )


@task(name="download-manifest", task_run_name="download META.json of {request.label}", timeout_seconds=TASK_TIMEOUT_S)
def download_manifest(request: BatchRequest, workdir: Path) -> Manifest:
    """Fetch and parse the META.json at the request's location (capped at ``manifest_max_bytes``).

    A 404 (not published yet) is tried again ``manifest_wait_attempts`` times,
    ``manifest_wait_s`` apart, before the run fails.
    """
    url = export_file_url(request.location, MANIFEST_NAME)
    cap = get_settings().manifest_max_bytes
    try:
        downloaded = _waiting_for_manifest(request.label, url)(
            download_file, request.label, url, workdir / MANIFEST_NAME, max_bytes=cap
        )
    except NotFoundError as error:
        raise ManifestError(
            request.label,
            f"{MANIFEST_NAME}: expected at {url}, found HTTP {error.status or 404} "
            "(the export is not published yet, or was published without its manifest)",
        ) from error
    return parse_manifest(f"{request.label}: {MANIFEST_NAME}", downloaded.path.read_bytes())


# No timeout_seconds: the pipeline submits it to a worker thread, where Prefect cannot interrupt it;
# the HTTP timeouts and the flow's time limit bound it.
@task(name="download-file", task_run_name="download {resource.path} of {request.label}")
def download_resource(request: BatchRequest, resource: Resource, workdir: Path) -> DownloadedFile:
    """Stream one file of the export to disk, hashing it on the way; never more than its listed bytes."""
    url = export_file_url(request.location, resource.path)
    target = workdir / "files" / resource.path
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        return download_file(request.label, url, target, expected_bytes=resource.bytes)
    except NotFoundError as error:
        raise IntegrityError(
            request.label,
            f"{resource.path}: listed in {MANIFEST_NAME}, expected at {url}, found HTTP {error.status or 404}",
        ) from error


def download_resources(
    request: BatchRequest, resources: tuple[Resource, ...], workdir: Path
) -> Iterator[tuple[Resource, DownloadedFile]]:
    """Download every listed file at once (a task run each, in worker threads); yield each as it finishes.

    However the caller stops (a failed download, a failed table), every download has
    ended before this returns, so none is left writing into the run's directory.
    """
    futures = {download_resource.submit(request, resource, workdir): resource for resource in resources}
    try:
        for future in as_completed(list(futures)):
            yield futures[future], future.result()
    finally:
        wait(list(futures))
