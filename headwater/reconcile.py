"""Reconciliation: the warehouse is the truth, the ledger its journal.

Before a publish swaps its first table, the load step records a *publish intent* in
the ledger: the batch, and per table the partitions it swaps, the rows they must hold
afterwards and the rows per ``_batch_id`` they held before. The run's outcome closes
the intent in the same ledger transaction that records the new dataset version.

An intent still open when no live run owns it means a process died between those two
points (kill -9, OOM, a lost host) or could not reach the ledger. The next run of the
instance repairs it before anything else, reading the warehouse:

1. every table already holds the published state → the publish completed; only the
   ledger write was lost: record the version (``recorded``);
2. else every staging table is still there, complete → finish the publish by swapping
   each table again from its staging table; this also heals a partition that holds
   two batches after a crash inside ``REPLACE PARTITION`` (``finished``);
3. else put every table back to its previous state from the backups taken before
   the first swap, or, with no backup left, by deleting the rows of other batches
   (``undone``).

Each ends with a check of every table; a state that still disagrees raises
:class:`RepairError`, and the reconcile task closes the intent as ``abandoned``
(recorded ``failed``, kind ``repair_failed``) so it never blocks later runs; the
partition stays damaged until a load replaces it. Crashed runs (a ``running`` row whose
process is gone) are turned into ``failed`` with kind ``crashed`` first, so the circuit
breaker counts them.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.binding import format_query_value
from clickhouse_connect.driver.client import Client

from headwater.errors import HeadwaterError
from headwater.ledger import Ledger
from headwater.loading import (
    TablePlan,
    batches_in,
    distinct_keys,
    mismatch,
    partition_filter,
    qualified,
    swap_partitions,
    table_exists,
)
from headwater.logs import run_logger
from headwater.settings import get_settings
from headwater.spec import SourceSpec
from headwater.tables import MERGE

RECORDED, FINISHED, UNDONE = "recorded", "finished", "undone"

_ACTIVE_RUNS: set[str] = set()
"""Run ids this process is executing now (a ``running`` row of ours not in here is dead)."""


class RepairError(HeadwaterError):
    """The warehouse could not be brought back to one consistent version."""

    kind = "repair_failed"


def owner_id() -> str:
    """The current process, as ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def run_started(run_id: str) -> None:
    """Mark ``run_id`` as executing in this process."""
    _ACTIVE_RUNS.add(run_id)


def run_ended(run_id: str) -> None:
    """Mark ``run_id`` as no longer executing in this process."""
    _ACTIVE_RUNS.discard(run_id)


@contextmanager
def lease(run_id: str, renew: Callable[[], None], every_s: float) -> Iterator[None]:
    """Hold a run's lease: mark it executing here and call ``renew`` every ``every_s`` seconds until exit."""
    run_started(run_id)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                renew()
            except Exception as error:  # a missed beat is retried at the next interval
                run_logger().warning("could not renew the run's lease: %s", error)

    thread = threading.Thread(target=beat, name=f"lease-{run_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        run_ended(run_id)
        thread.join(timeout=5)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_dead(row: Mapping[str, Any], now: datetime | None = None) -> str | None:
    """Why a ``running`` ledger row's process is gone, or None while it may still be alive.

    Same host: the process id no longer exists, or it is this process and the run is not
    executing here. Any host: its heartbeat is older than the lease (``HEADWATER_RUN_LEASE_S``).
    """
    now = now or datetime.now(UTC)
    lease = timedelta(seconds=get_settings().run_lease_s)
    owner = row.get("owner") or ""
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            if row["run_id"] not in _ACTIVE_RUNS:
                return f"its process {owner} (this one) no longer executes it"
        elif not _pid_alive(int(pid)):
            return f"its process {owner} is gone"
    beat = row.get("heartbeat_at") or row.get("started_at")
    if beat is not None and now - beat > lease:
        return f"no heartbeat from {owner or 'its process'} since {beat:%Y-%m-%d %H:%M:%S} UTC"
    return None


def live_run_ids(ledger: Ledger, instance: str) -> set[str]:
    """The instance's ``running`` runs whose process may still be alive."""
    return {row["run_id"] for row in ledger.running_runs(instance) if is_dead(row) is None}


@dataclass
class Repair:
    """What the reconciliation of one publish intent found and did."""

    run_id: str
    partition_key: str
    action: str
    found: list[str] = field(default_factory=list)
    version: dict[str, Any] | None = None

    def summary(self) -> str:
        """One line: what was found and what was done."""
        found = "; ".join(self.found) or "every table already held the published batch"
        return f"publish of run {self.run_id[:12]} ({self.partition_key}) {self.action}: {found}"


def _staging_complete(client: Client, database: str, plan: TablePlan) -> bool:
    if not table_exists(client, database, plan.source):
        return False
    return sum(batches_in(client, database, plan.source, plan.where).values()) == plan.expected_rows


def _undo_without_backup(client: Client, database: str, plan: TablePlan) -> None:
    """Remove the rows of batches the table did not hold before (merge tables: deduplicate)."""
    target = qualified(database, plan.table)
    if plan.mode == MERGE:
        for part in plan.parts:
            client.command(f"OPTIMIZE TABLE {target} PARTITION {part.expr} FINAL")
        return
    keep = ", ".join(format_query_value(b) for b in plan.previous) or "''"
    client.command(
        f"ALTER TABLE {target} DELETE WHERE ({plan.where}) AND `_batch_id` NOT IN ({keep})",
        settings={"mutations_sync": 2},
    )


def repair_intent(client: Client, intent: Mapping[str, Any], source: str) -> Repair:
    """Bring the warehouse to one version for an open publish intent; raise :class:`RepairError` if impossible."""
    database = intent["plan"]["database"]
    plans = [TablePlan.from_json(t) for t in intent["plan"]["tables"]]
    batch_id = intent["batch_id"]
    repair = Repair(run_id=intent["run_id"], partition_key=intent["partition_key"], action=RECORDED)
    repair.found = [m for plan in plans if (m := mismatch(client, database, plan, batch_id))]
    published = not repair.found
    if repair.found and all(_staging_complete(client, database, plan) for plan in plans):
        for plan in plans:
            swap_partitions(client, database, plan.table, plan.source, plan.parts)
        repair.action, published = FINISHED, True
    elif repair.found:
        for plan in plans:
            if mismatch(client, database, plan, None) is None:
                continue
            if table_exists(client, database, plan.backup):
                swap_partitions(client, database, plan.table, plan.backup, plan.parts)
            else:
                _undo_without_backup(client, database, plan)
        repair.action = UNDONE
    left = [m for plan in plans if (m := mismatch(client, database, plan, batch_id if published else None))]
    if left:
        raise RepairError(source, f"could not repair the publish of run {intent['run_id'][:12]}: {'; '.join(left)}")
    if published:
        repair.version = {
            "content_hash": intent["content_hash"],
            "batch_id": batch_id,
            "rows_by_table": {plan.table: plan.batch_rows for plan in plans},
            "bytes": intent["plan"].get("bytes") or 0,
        }
    return repair


def partition_of(spec: SourceSpec, partition_key: str) -> dict[str, str]:
    """The partition values of a ledger ``partition_key`` (``ethereum/2026-11-22``)."""
    return dict(zip(spec.partition_columns, partition_key.split("/"), strict=True))


def loaded_version_problems(
    client: Client, spec: SourceSpec, database: str, partition: Mapping[str, Any], version: Mapping[str, Any]
) -> list[str]:
    """How the warehouse differs from a loaded version of ``spec``'s partition (empty: it agrees).

    A replace table's partition must hold exactly the version's batch with its rows; a
    merge table must show no key twice where the batch's rows live (later batches may
    have superseded some of them).
    """
    batch_id: str = version["batch_id"]
    where = partition_filter(partition, spec.partition_columns)
    problems: list[str] = []
    for table, rows in version["rows_by_table"].items():
        if table not in spec.tables:
            continue
        if not table_exists(client, database, table):
            problems.append(f"{table}: expected the table, found none")
            continue
        table_spec = spec.table(table)
        if table_spec.write_mode == MERGE:
            batch_parts = (
                f"_partition_id IN (SELECT DISTINCT _partition_id FROM {qualified(database, table)} "
                f"WHERE `_batch_id` = {format_query_value(batch_id)})"
            )
            stored = sum(batches_in(client, database, table, batch_parts).values())
            doubled = stored - distinct_keys(client, database, table, table_spec.key, batch_parts)
            if doubled:
                problems.append(f"{table}: {doubled} row(s) repeat a key")
            continue
        found = batches_in(client, database, table, where)
        expected = {batch_id: rows} if rows else {}
        if found != expected:
            problems.append(f"{table}: expected {expected}, found {found}")
    return problems


def damaged_instances(
    ledger: Ledger, client: Client, sources: Mapping[str, tuple[SourceSpec, str]], instances: Sequence[str]
) -> dict[str, list[str]]:
    """Instances whose newest loaded partition (per source) the warehouse does not hold, or with an unfinished publish.

    ``sources`` maps a source name to its spec and database. An instance of an unknown
    source is left out.
    """
    damaged: dict[str, list[str]] = {}
    for instance in instances:
        live = live_run_ids(ledger, instance)
        problems = [
            f"publish of run {i['run_id'][:12]} ({i['partition_key']}) unfinished"
            for i in ledger.pending_intents(instance)
            if i["run_id"] not in live
        ]
        for source, version in ledger.latest_versions_by_source(instance).items():
            if known := sources.get(source):
                spec, database = known
                problems += loaded_version_problems(
                    client, spec, database, partition_of(spec, version["partition_key"]), version
                )
        if problems:
            damaged[instance] = problems
    return damaged
