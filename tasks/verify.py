"""Verify steps: the manifest against the request and the contract, each file against the manifest."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from headwater.batch import BatchRequest
from headwater.errors import IntegrityError, ManifestError
from headwater.http import DownloadedFile
from headwater.logs import run_logger
from headwater.manifest import MANIFEST_NAME, Manifest, Resource


def _describe(values: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "nothing"


def verify_manifest(request: BatchRequest, manifest: Manifest) -> tuple[Resource, ...]:
    """Check the manifest against the request and the contract; return the resources to load.

    The partition and constants must match the request; every table must be in the
    contract; every contract table not excluded must be listed; excluded tables are
    skipped (and logged).
    """
    where = f"{request.label}: {MANIFEST_NAME}"
    if manifest.source != request.source.name:
        raise ManifestError(where, f"expected x-headwater.source {request.source.name!r}, found {manifest.source!r}")
    expected = {k: str(v) for k, v in request.partition.items()}
    if manifest.partition != expected:
        raise ManifestError(
            where,
            f"partition mismatch: expected {_describe(dict(expected))}, found {_describe(dict(manifest.partition))}",
        )
    for name, value in request.constants.items():
        found = manifest.constants.get(name)
        if found != value:
            raise ManifestError(where, f"expected x-headwater.{name} = {value!r}, found {found!r}")
    unknown = [r.name for r in manifest.resources if r.name not in request.source.tables]
    if unknown:
        raise ManifestError(
            where,
            f"expected only contract tables ({', '.join(request.source.tables)}), "
            f"found {', '.join(repr(u) for u in unknown)}",
        )
    listed = {r.name for r in manifest.resources}
    missing = [t for t in request.ingested_tables if t not in listed]
    if missing:
        raise ManifestError(where, f"expected resources for {', '.join(missing)}, found none listed")
    skipped = sorted(listed & request.excluded_tables)
    if skipped:
        run_logger().info("%s: skipping excluded table(s) %s", request.label, ", ".join(skipped))
    wanted = [manifest.resource(t) for t in request.ingested_tables]
    for resource in wanted:
        if resource.format != "parquet":
            raise ManifestError(where, f"{resource.name}: expected format 'parquet', found {resource.format!r}")
    return tuple(wanted)


def verify_file(request: BatchRequest, resource: Resource, downloaded: DownloadedFile) -> None:
    """Check a downloaded file's size, SHA-256, Parquet footer and row count against the manifest."""
    where = f"{request.label}: {resource.path}"
    if downloaded.bytes != resource.bytes:
        raise IntegrityError(where, f"size mismatch: expected {resource.bytes} bytes, found {downloaded.bytes}")
    if downloaded.sha256 != resource.sha256:
        raise IntegrityError(where, f"sha256 mismatch: expected {resource.sha256}, found {downloaded.sha256}")
    try:
        rows = pq.ParquetFile(downloaded.path).metadata.num_rows
    except (pa.ArrowInvalid, OSError) as error:
        raise IntegrityError(where, f"expected a Parquet file, found unreadable data: {error}") from error
    if rows != resource.rows:
        raise IntegrityError(where, f"row count mismatch: expected {resource.rows} rows, found {rows}")
