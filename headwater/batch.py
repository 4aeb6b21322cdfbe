"""One batch request: which source instance, which partition, where its files go."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Generic

from headwater.settings import Settings
from headwater.spec import (
    DeclaredSource,
    ExportSource,
    P,
    SourceSpec,
    check_params,
    partition_of,
    resolve_urls,
    values,
)


@dataclass(frozen=True)
class BatchRequest:
    """What one pipeline run is asked to load.

    ``instance`` names the source instance like its deployment (``sot-ethereum``);
    ``partition`` holds the typed partition values (``network``, ``processing_date``);
    ``constants`` the further per-batch values the manifest must agree with;
    ``location`` where the batch's files are (for exports, the export's URL).
    """

    source: SourceSpec
    instance: str
    partition: dict[str, str | date]
    database: str
    constants: dict[str, Any] = field(default_factory=dict)
    excluded_tables: frozenset[str] = frozenset()
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    location: str = ""

    @property
    def partition_key(self) -> str:
        """The partition as one string, e.g. ``ethereum/2026-11-22``."""
        return "/".join(str(self.partition[c]) for c in self.source.partition_columns)

    @property
    def label(self) -> str:
        """How errors and logs name this batch, e.g. ``sot-ethereum 2026-11-22``."""
        values = [str(v) for k, v in self.partition.items() if not self.instance.endswith(f"-{v}")]
        return " ".join([self.instance, *values])

    @property
    def tag(self) -> str:
        """Short, unique suffix of this run's staging objects."""
        return run_tag(self.run_id)

    def batch_id(self, content_hash: str) -> str:
        """Lineage id written into every row: source, partition and content hash."""
        return f"{self.source.name}:{self.partition_key}:{content_hash[:16]}"

    @property
    def ingested_tables(self) -> tuple[str, ...]:
        """Contract tables this run loads (contract order, exclusions removed)."""
        return tuple(t for t in self.source.tables if t not in self.excluded_tables)


def run_tag(run_id: str) -> str:
    """The suffix of a run's staging and backup tables and of its temp dir."""
    return run_id.replace("-", "")[:16]


@dataclass(frozen=True)
class DeclaredRun(Generic[P]):
    """A declared source's run, checked and resolved before anything is fetched."""

    request: BatchRequest
    params: P
    urls: dict[str, str]


def declared_run(source: DeclaredSource[P], raw: Mapping[str, Any], settings: Settings) -> DeclaredRun[P]:
    """Check a run's parameters and resolve its instance, partition, database and URLs.

    Raises ConfigurationError (one line, naming the instance) before any request.
    """
    params = check_params(source, raw)
    instance = source.instance_of(params)
    urls = resolve_urls(source, instance, params, settings)
    partition = partition_of(source, params)
    excluded = set(params.excluded_tables)
    if isinstance(source, ExportSource):
        excluded |= set(source.excluded(settings))
        text = {k: v.isoformat() if isinstance(v, date) else v for k, v in partition.items()}
        location = source.url_template.format(base_url=next(iter(urls.values())).rstrip("/"), **text)
        constants = values(params, source.constants)
    else:
        location = next(iter(urls.values()), "")
        constants = {}
    request = BatchRequest(
        source=source,
        instance=instance,
        partition=partition,
        database=source.database_in(settings),
        constants=constants,
        excluded_tables=frozenset(excluded),
        location=location,
    )
    return DeclaredRun(request=request, params=params, urls=urls)
