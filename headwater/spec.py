"""A source as data: the tables it publishes, how a batch is partitioned, what it excludes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from headwater.tables import TableSpec


@dataclass(frozen=True)
class SourceSpec:
    """Everything the shared pipeline needs to know about one source.

    ``partition_columns`` name the columns that identify one batch (they are in every
    table and are the ClickHouse partition key); ``constant_columns`` are further
    columns whose value is fixed per batch by the manifest (e.g. ``window_days``);
    ``date_column`` is the partition column that retention compares with its cutoff;
    ``catch_up`` is what a deployment does with runs missed during downtime
    (``latest`` or ``all``, see ``headwater/catchup.py``).
    """

    name: str
    tables: Mapping[str, TableSpec]
    partition_columns: tuple[str, ...]
    constant_columns: tuple[str, ...] = ()
    date_column: str | None = None
    catch_up: str = "latest"

    def table(self, name: str) -> TableSpec:
        """The spec of table ``name``; KeyError when the contract has no such table."""
        return self.tables[name]
