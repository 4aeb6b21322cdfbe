"""META.json: a Frictionless Data Package descriptor with Headwater's ``x-headwater`` block.

Parsing is strict: every problem names the source, the file, what was expected and
what was found. Writing is used by generators and by API sources, which describe
what they fetched in the same form so change detection and lineage work alike.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from headwater.errors import ManifestError

MANIFEST_NAME = "META.json"
_HASH = re.compile(r"^sha256:([0-9a-f]{64})$")


@dataclass(frozen=True)
class Resource:
    """One file of a batch, as the manifest describes it."""

    name: str
    path: str
    format: str
    bytes: int
    sha256: str
    rows: int


@dataclass(frozen=True)
class Manifest:
    """A parsed, contract-checked META.json."""

    name: str
    created: datetime
    source: str
    partition: dict[str, str]
    constants: dict[str, Any]
    resources: tuple[Resource, ...]
    content_hash: str

    def resource(self, name: str) -> Resource:
        """The resource for table ``name``."""
        return next(r for r in self.resources if r.name == name)


def _require(where: str, obj: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if key not in obj:
        raise ManifestError(where, f"expected field {what!r}, found none")
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ManifestError(where, f"expected {what!r} to be {_kind_name(kind)}, found {value!r}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(
        {"str": "a string", "int": "an integer", "dict": "an object", "list": "a list"}.get(k.__name__, k.__name__)
        for k in kinds
    )


def _check_relative_path(where: str, path: str) -> str:
    posix = PurePosixPath(path)
    if (
        not path
        or "://" in path
        or path.startswith(("/", "\\"))
        or re.match(r"^[A-Za-z]:", path)
        or any(part in ("..", "") for part in path.split("/"))
        or "\\" in path
        or posix.is_absolute()
    ):
        raise ManifestError(where, f"expected a relative path inside the export directory, found {path!r}")
    return path


def parse_manifest(where: str, raw: bytes) -> Manifest:
    """Parse and structurally check META.json bytes (``where`` names source and file)."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(where, f"expected valid JSON, found a parse error: {error}") from error
    if not isinstance(doc, dict):
        raise ManifestError(where, f"expected a JSON object, found {type(doc).__name__}")
    name = _require(where, doc, "name", str, "name")
    created_raw = _require(where, doc, "created", str, "created")
    try:
        created = datetime.fromisoformat(created_raw.replace("Z", "+00:00"))
    except ValueError as error:
        raise ManifestError(where, f"expected 'created' as an RFC 3339 timestamp, found {created_raw!r}") from error
    extra = _require(where, doc, "x-headwater", dict, "x-headwater")
    source = _require(where, extra, "source", str, "x-headwater.source")
    partition = _require(where, extra, "partition", dict, "x-headwater.partition")
    constants = {k: v for k, v in extra.items() if k not in ("source", "partition")}
    resources_raw = _require(where, doc, "resources", list, "resources")
    resources: list[Resource] = []
    seen: set[str] = set()
    for index, entry in enumerate(resources_raw):
        at = f"{where}: resources[{index}]"
        if not isinstance(entry, dict):
            raise ManifestError(at, f"expected an object, found {entry!r}")
        rname = _require(at, entry, "name", str, "name")
        if rname in seen:
            raise ManifestError(at, f"expected each resource once, found {rname!r} twice")
        seen.add(rname)
        path = _check_relative_path(f"{at} ({rname})", _require(at, entry, "path", str, "path"))
        fmt = _require(at, entry, "format", str, "format")
        size = _require(at, entry, "bytes", int, "bytes")
        rows = _require(at, entry, "rows", int, "rows")
        digest = _require(at, entry, "hash", str, "hash")
        match = _HASH.match(digest)
        if not match:
            raise ManifestError(at, f"expected hash as 'sha256:<64 hex>', found {digest!r}")
        if size < 0 or rows < 0:
            raise ManifestError(at, f"expected non-negative bytes and rows, found {size} and {rows}")
        resources.append(Resource(rname, path, fmt, size, match.group(1), rows))
    return Manifest(
        name=name,
        created=created,
        source=source,
        partition={str(k): str(v) for k, v in partition.items()},
        constants=constants,
        resources=tuple(resources),
        content_hash=content_hash(doc),
    )


def content_hash(document: dict[str, Any]) -> str:
    """SHA-256 of the manifest in canonical JSON, without ``created`` and ``x-headwater.stats``.

    Two manifests that list the same files (names, sizes, hashes, rows) for the same
    partition have the same content hash, whenever they were written: a republished
    export, or an API source fetching the same data again, is ``unchanged``. ``stats``
    say what producing the batch took (e.g. texts embedded), not what it holds.
    """
    canonical = {k: v for k, v in document.items() if k != "created"}
    extension = canonical.get("x-headwater")
    if isinstance(extension, dict) and "stats" in extension:
        canonical["x-headwater"] = {k: v for k, v in extension.items() if k != "stats"}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def build_manifest(
    directory: Path,
    *,
    name: str,
    source: str,
    partition: dict[str, str | date],
    constants: dict[str, Any],
    tables: dict[str, int],
    created: datetime | None = None,
) -> dict[str, Any]:
    """A META.json document describing ``tables`` (name -> rows) written as ``<name>.parquet``."""
    resources = []
    for table, rows in tables.items():
        path = directory / f"{table}.parquet"
        resources.append(
            {
                "name": table,
                "path": path.name,
                "format": "parquet",
                "bytes": path.stat().st_size,
                "hash": f"sha256:{sha256_file(path)}",
                "rows": rows,
            }
        )
    stamp = (created or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "name": name,
        "created": stamp,
        "resources": resources,
        "x-headwater": {
            "source": source,
            "partition": {k: str(v) for k, v in partition.items()},
            **constants,
        },
    }


def write_manifest(directory: Path, document: dict[str, Any]) -> Path:
    """Write META.json into ``directory``."""
    path = directory / MANIFEST_NAME
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
