"""API batches: the frames an API fetch returns, written as Parquet files plus a META.json.

An API source fetches its responses, normalises them into one polars frame per table,
and this module writes those frames as Parquet files plus a META.json describing them
in the run's temp dir. From there the batch goes through exactly the pipeline the
checksummed exports use: verify, skip if unchanged (same content hash as the loaded
version), validate, load, record, cleanup.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from headwater.batch import BatchRequest
from headwater.manifest import (
    MANIFEST_NAME,
    Manifest,
    build_manifest,
    parse_manifest,
    write_manifest,
)
from headwater.settings import get_settings
from headwater.spec import SourceSpec
from headwater.tables import TableSpool, write_parquet


@dataclass
class FetchResult:
    """What an API fetch returns: a frame per table, and what it knows about the batch's quality.

    ``rows_rejected`` (e.g. quarantined out-of-range rows), ``quality_score`` (0..1) and
    ``notes`` (e.g. which providers failed and why) are written into the batch's
    META.json (``x-headwater``) and from there into the run ledger.
    """

    frames: Mapping[str, pl.DataFrame | TableSpool]
    """A frame per table, or a spool the fetch wrote it into chunk by chunk (a large batch)."""
    rows_rejected: int | None = None
    quality_score: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    """Parts of the batch that failed (e.g. ``{"location 2178": "HTTP 500 …"}``); the rest is loaded
    and the run is recorded ``partial``. Empty when every part succeeded."""
    stats: dict[str, Any] = field(default_factory=dict)
    """What producing the batch took (e.g. ``{"embedded": 12}``): in the ledger's notes, not in the content hash."""


Fetch = Callable[[], "dict[str, pl.DataFrame] | FetchResult"]


@contextmanager
def open_spools(source: SourceSpec, tables: Iterable[str]) -> Iterator[dict[str, TableSpool]]:
    """A spool per table in a fresh temp dir under ``HEADWATER_TMP_DIR``.

    The batch's description moves the files and removes the dir; a fetch that fails
    removes them here. A killed process leaves the dir to the retention flow's sweep of
    orphaned temp dirs.
    """
    directory = Path(tempfile.mkdtemp(prefix="spool-", dir=_tmp_root()))
    opened = {name: TableSpool(source.table(name), directory / f"{name}.parquet") for name in tables}
    try:
        yield opened
    except BaseException:
        for spool in opened.values():
            spool.close()
        shutil.rmtree(directory, ignore_errors=True)
        raise


def _tmp_root() -> Path:
    root = get_settings().tmp_dir
    root.mkdir(parents=True, exist_ok=True)
    return root


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
            ("stats", result.stats or None),
        )
        if v is not None
    }
    for table, frame in result.frames.items():
        target = directory / f"{table}.parquet"
        if isinstance(frame, TableSpool):
            shutil.move(frame.close(), target)
            counts[table] = frame.rows
        else:
            counts[table] = write_parquet(target, request.source.table(table), [frame])
    for spool_dir in {f.path.parent for f in result.frames.values() if isinstance(f, TableSpool)}:
        shutil.rmtree(spool_dir, ignore_errors=True)
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
