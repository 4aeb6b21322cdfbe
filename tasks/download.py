"""Download tasks: META.json and each listed file, streamed to the run's temp dir."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from headwater.batch import BatchRequest
from headwater.errors import IntegrityError, ManifestError, NotFoundError
from headwater.http import DownloadedFile, download_file
from headwater.manifest import MANIFEST_NAME, Manifest, Resource, parse_manifest


def export_file_url(export_url: str, path: str) -> str:
    """URL of a file of the export (``path`` is relative and already checked)."""
    return f"{export_url.rstrip('/')}/{path}"


@task(name="download-manifest", task_run_name="download META.json of {request.label}")
def download_manifest(request: BatchRequest, workdir: Path) -> Manifest:
    """Fetch and parse the META.json at the request's location."""
    url = export_file_url(request.location, MANIFEST_NAME)
    try:
        downloaded = download_file(request.label, url, workdir / MANIFEST_NAME)
    except NotFoundError as error:
        raise ManifestError(
            request.label,
            f"{MANIFEST_NAME}: expected at {url}, found HTTP {error.status or 404} "
            "(the export is not published yet, or was published without its manifest)",
        ) from error
    return parse_manifest(f"{request.label}: {MANIFEST_NAME}", downloaded.path.read_bytes())


@task(name="download-file", task_run_name="download {resource.path} of {request.label}")
def download_resource(request: BatchRequest, resource: Resource, workdir: Path) -> DownloadedFile:
    """Stream one file of the export to disk, hashing it on the way."""
    url = export_file_url(request.location, resource.path)
    target = workdir / "files" / resource.path
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        return download_file(request.label, url, target)
    except NotFoundError as error:
        raise IntegrityError(
            request.label,
            f"{resource.path}: listed in {MANIFEST_NAME}, expected at {url}, found HTTP {error.status or 404}",
        ) from error
