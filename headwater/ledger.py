"""The metadata ledger: every run attempt, dataset versions, source state and health.

Reached through prefect-sqlalchemy's ``SqlAlchemyConnector`` (SQLite at
``<home>/ledger.db`` by default, PostgreSQL in production) with SQLAlchemy Core,
so the same statements run on both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.faults import checkpoint

SCHEMA_VERSION = 4

metadata = sa.MetaData()

ledger_info = sa.Table(
    "ledger_info",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("flow_run_id", sa.String(64), nullable=True),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("instance", sa.String(128), nullable=False, index=True),
    sa.Column("partition_key", sa.String(256), nullable=False),
    sa.Column("batch_id", sa.String(256), nullable=True),
    sa.Column("status", sa.String(32), nullable=False, index=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("duration_s", sa.Float, nullable=True),
    sa.Column("rows_fetched", sa.BigInteger, nullable=True),
    sa.Column("rows_loaded", sa.BigInteger, nullable=True),
    sa.Column("rows_rejected", sa.BigInteger, nullable=True),
    sa.Column("rows_deduplicated", sa.BigInteger, nullable=True),
    sa.Column("quality_score", sa.Float, nullable=True),
    sa.Column("rows_by_table", sa.Text, nullable=True),
    sa.Column("bytes", sa.BigInteger, nullable=True),
    sa.Column("manifest_hash", sa.String(64), nullable=True),
    sa.Column("error_kind", sa.String(64), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("notes", sa.Text, nullable=True),
    sa.Column("owner", sa.String(256), nullable=True),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
)

dataset_versions = sa.Table(
    "dataset_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("instance", sa.String(128), nullable=False),
    sa.Column("partition_key", sa.String(256), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("batch_id", sa.String(256), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("rows_by_table", sa.Text, nullable=True),
    sa.Index("ix_dataset_versions_partition", "instance", "partition_key", "loaded_at"),
)

publish_intents = sa.Table(
    "publish_intents",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("instance", sa.String(128), nullable=False, index=True),
    sa.Column("partition_key", sa.String(256), nullable=False),
    sa.Column("batch_id", sa.String(256), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("plan", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("resolution", sa.Text, nullable=True),
)

source_state = sa.Table(
    "source_state",
    metadata,
    sa.Column("instance", sa.String(128), primary_key=True),
    sa.Column("key", sa.String(256), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

source_health = sa.Table(
    "source_health",
    metadata,
    sa.Column("instance", sa.String(128), primary_key=True),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("circuit_state", sa.String(16), nullable=False),
    sa.Column("consecutive_failures", sa.Integer, nullable=False),
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("freshness", sa.String(16), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

RUNNING, LOADED, UNCHANGED, FAILED = "running", "loaded", "unchanged", "failed"
SKIPPED_CIRCUIT_OPEN = "skipped_circuit_open"
PARTIAL = "partial"
"""Some parts of the batch (e.g. OpenAQ locations) failed; the others were loaded. Alerts treat it as a failure."""
REPAIRED = "repaired"
"""A reconciliation found the warehouse and the ledger in disagreement and repaired it (notes say what)."""
CRASHED = "crashed"
"""Error kind of a run whose process died without recording an outcome."""
INTENT_PENDING, INTENT_PUBLISHED, INTENT_UNDONE = "pending", "published", "undone"
INTENT_ABANDONED = "abandoned"
"""A publish reconciliation could neither finish nor undo; the partition's next load replaces it."""
SUCCESSES = frozenset({LOADED, UNCHANGED})


@dataclass
class RunRecord:
    """What a finished run reports to the ledger."""

    status: str
    batch_id: str | None = None
    rows_by_table: dict[str, int] = field(default_factory=dict)
    bytes: int | None = None
    manifest_hash: str | None = None
    error_kind: str | None = None
    error: str | None = None
    rows_fetched: int | None = None
    rows_rejected: int | None = None
    rows_deduplicated: int | None = None
    quality_score: float | None = None
    notes: dict[str, Any] | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _row(mapping: Any) -> dict[str, Any]:
    """A result row as a dict, datetimes as aware UTC (SQLite returns them naive)."""
    return {k: _as_utc(v) if isinstance(v, datetime) else v for k, v in mapping.items()}


class Ledger:
    """Run and dataset-version bookkeeping on one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def migrate(self) -> None:
        """Bring the schema to ``SCHEMA_VERSION`` (idempotent).

        New tables are created; columns added since an older version are added with
        ``ALTER TABLE … ADD COLUMN`` (all added columns are nullable), then the version
        is recorded.
        """
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            current = conn.execute(sa.select(ledger_info.c.value).where(ledger_info.c.key == "schema_version")).scalar()
            if current is not None and int(current) >= SCHEMA_VERSION:
                return
            inspector = sa.inspect(conn)
            for table in metadata.sorted_tables:
                present = {c["name"] for c in inspector.get_columns(table.name)}
                for column in table.columns:
                    if column.name not in present:
                        ddl = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
                        conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {ddl}"))
            if current is None:
                conn.execute(ledger_info.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
            else:
                conn.execute(
                    ledger_info.update().where(ledger_info.c.key == "schema_version").values(value=str(SCHEMA_VERSION))
                )

    def schema_version(self) -> int:
        """The schema version recorded in the ledger."""
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(ledger_info.c.value).where(ledger_info.c.key == "schema_version")
            ).scalar_one()
        return int(value)

    def start_run(
        self,
        *,
        run_id: str,
        flow_run_id: str | None,
        source: str,
        instance: str,
        partition_key: str,
        owner: str | None = None,
    ) -> None:
        """Record that a run began (status ``running``), owned by ``owner`` (``host:pid``)."""
        now = _now()
        with self.engine.begin() as conn:
            conn.execute(
                runs.insert().values(
                    run_id=run_id,
                    flow_run_id=flow_run_id,
                    source=source,
                    instance=instance,
                    partition_key=partition_key,
                    status=RUNNING,
                    started_at=now,
                    owner=owner,
                    heartbeat_at=now,
                )
            )

    def heartbeat(self, run_id: str) -> None:
        """Renew a running run's lease."""
        with self.engine.begin() as conn:
            conn.execute(
                runs.update().where(runs.c.run_id == run_id, runs.c.status == RUNNING).values(heartbeat_at=_now())
            )

    def running_runs(self, instance: str) -> list[dict[str, Any]]:
        """The instance's ledger rows still marked ``running``."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(runs).where(runs.c.instance == instance, runs.c.status == RUNNING))
            return [_row(r) for r in rows.mappings().all()]

    def mark_crashed(self, run_id: str, reason: str) -> None:
        """Turn a ``running`` row whose process died into ``failed`` with kind ``crashed``."""
        now = _now()
        with self.engine.begin() as conn:
            conn.execute(
                runs.update()
                .where(runs.c.run_id == run_id, runs.c.status == RUNNING)
                .values(status=FAILED, finished_at=now, error_kind=CRASHED, error=reason)
            )

    def record_intent(
        self, *, run_id: str, instance: str, partition_key: str, batch_id: str, content_hash: str, plan: Any
    ) -> None:
        """Record, before the first table is swapped, what a publish is about to do."""
        with self.engine.begin() as conn:
            conn.execute(
                publish_intents.insert().values(
                    run_id=run_id,
                    instance=instance,
                    partition_key=partition_key,
                    batch_id=batch_id,
                    content_hash=content_hash,
                    plan=json.dumps(plan, sort_keys=True),
                    state=INTENT_PENDING,
                    created_at=_now(),
                )
            )

    def pending_intents(self, instance: str) -> list[dict[str, Any]]:
        """The instance's publishes with no recorded outcome, oldest first (``plan`` decoded)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(publish_intents)
                .where(publish_intents.c.instance == instance, publish_intents.c.state == INTENT_PENDING)
                .order_by(publish_intents.c.created_at)
            )
            found = [_row(r) for r in rows.mappings().all()]
        for row in found:
            row["plan"] = json.loads(row["plan"])
        return found

    def resolve_intent(self, run_id: str, state: str, resolution: str, conn: sa.Connection | None = None) -> None:
        """Close a publish intent as ``published`` or ``undone``, saying how."""
        statement = (
            publish_intents.update()
            .where(publish_intents.c.run_id == run_id)
            .values(state=state, resolved_at=_now(), resolution=resolution)
        )
        if conn is not None:
            conn.execute(statement)
            return
        with self.engine.begin() as own:
            own.execute(statement)

    def record_repair(
        self,
        *,
        run_id: str,
        source: str,
        instance: str,
        partition_key: str,
        found: str,
        notes: dict[str, Any],
        version: Mapping[str, Any] | None = None,
        error_kind: str | None = None,
    ) -> None:
        """Record a reconciliation (status ``repaired``; ``failed`` when ``error_kind`` says it could not repair).

        ``version`` (``content_hash``, ``batch_id``, ``rows_by_table``, ``bytes``) becomes
        the partition's current version when the repair finished a publish.
        """
        now = _now()
        with self.engine.begin() as conn:
            conn.execute(
                runs.insert().values(
                    run_id=run_id,
                    source=source,
                    instance=instance,
                    partition_key=partition_key,
                    status=FAILED if error_kind else REPAIRED,
                    error_kind=error_kind,
                    started_at=now,
                    finished_at=now,
                    duration_s=0.0,
                    error=found,
                    notes=json.dumps(notes, sort_keys=True, default=str),
                    batch_id=version["batch_id"] if version else None,
                )
            )
            if version:
                _insert_version(
                    conn,
                    instance=instance,
                    partition_key=partition_key,
                    content_hash=version["content_hash"],
                    batch_id=version["batch_id"],
                    rows_by_table=version["rows_by_table"],
                    size=version.get("bytes") or 0,
                    run_id=run_id,
                    loaded_at=now,
                )

    def record_skip(
        self, *, run_id: str, flow_run_id: str | None, source: str, instance: str, partition_key: str, reason: str
    ) -> None:
        """Record a run that did nothing because the source's circuit is open."""
        now = _now()
        with self.engine.begin() as conn:
            conn.execute(
                runs.insert().values(
                    run_id=run_id,
                    flow_run_id=flow_run_id,
                    source=source,
                    instance=instance,
                    partition_key=partition_key,
                    status=SKIPPED_CIRCUIT_OPEN,
                    started_at=now,
                    finished_at=now,
                    duration_s=0.0,
                    error_kind="circuit_open",
                    error=reason,
                )
            )

    def finish_run(self, run_id: str, record: RunRecord) -> None:
        """Record a run's outcome; a ``loaded`` run also becomes the partition's current version."""
        finished = _now()
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).mappings().one()
            started = _as_utc(row["started_at"])
            rows_loaded = sum(record.rows_by_table.values()) if record.rows_by_table else None
            conn.execute(
                runs.update()
                .where(runs.c.run_id == run_id)
                .values(
                    status=record.status,
                    batch_id=record.batch_id,
                    finished_at=finished,
                    duration_s=(finished - started).total_seconds() if started else None,
                    rows_fetched=record.rows_fetched,
                    rows_loaded=rows_loaded
                    if record.status in (LOADED, PARTIAL)
                    else 0
                    if record.status == UNCHANGED
                    else None,
                    rows_rejected=record.rows_rejected,
                    rows_deduplicated=record.rows_deduplicated,
                    quality_score=record.quality_score,
                    notes=json.dumps(record.notes, sort_keys=True) if record.notes else None,
                    rows_by_table=json.dumps(record.rows_by_table, sort_keys=True) if record.rows_by_table else None,
                    bytes=record.bytes,
                    manifest_hash=record.manifest_hash,
                    error_kind=record.error_kind,
                    error=record.error,
                )
            )
            published = record.status in (LOADED, PARTIAL) and record.manifest_hash and record.batch_id
            if published:
                _insert_version(
                    conn,
                    instance=row["instance"],
                    partition_key=row["partition_key"],
                    content_hash=str(record.manifest_hash),
                    batch_id=str(record.batch_id),
                    rows_by_table=record.rows_by_table,
                    size=record.bytes or 0,
                    run_id=run_id,
                    loaded_at=finished,
                )
            if published:
                checkpoint("ledger-write")  # fault-injection: die inside the open transaction
            intent = conn.execute(sa.select(publish_intents.c.state).where(publish_intents.c.run_id == run_id)).scalar()
            if intent == INTENT_PENDING:
                self.resolve_intent(
                    run_id,
                    INTENT_PUBLISHED if published else INTENT_UNDONE,
                    f"run finished {record.status}",
                    conn,
                )

    def current_version(self, instance: str, partition_key: str) -> dict[str, Any] | None:
        """The last loaded version of a partition (``rows_by_table`` decoded), or None."""
        return self._newest_version(
            dataset_versions.c.instance == instance, dataset_versions.c.partition_key == partition_key
        )

    def latest_versions_by_source(self, instance: str) -> dict[str, dict[str, Any]]:
        """The instance's most recently loaded version per source (a catalog ingestor has three)."""
        newest = (
            sa.select(sa.func.max(dataset_versions.c.id))
            .join(runs, runs.c.run_id == dataset_versions.c.run_id)
            .where(dataset_versions.c.instance == instance)
            .group_by(runs.c.source)
        )
        with self.engine.connect() as conn:
            pairs = conn.execute(
                sa.select(runs.c.source, dataset_versions.c.id)
                .join(runs, runs.c.run_id == dataset_versions.c.run_id)
                .where(dataset_versions.c.id.in_(newest))
            ).all()
        found = {source: self._newest_version(dataset_versions.c.id == id_) for source, id_ in pairs}
        return {source: version for source, version in found.items() if version}

    def _newest_version(self, *where: Any) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(dataset_versions)
                    .where(*where)
                    .order_by(dataset_versions.c.loaded_at.desc(), dataset_versions.c.id.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
        if not row:
            return None
        version = _row(row)
        encoded = version.get("rows_by_table")
        if encoded is None:  # versions recorded before schema 4: the run row has them
            with self.engine.connect() as conn:
                encoded = conn.execute(
                    sa.select(runs.c.rows_by_table).where(runs.c.run_id == version["run_id"])
                ).scalar()
        version["rows_by_table"] = json.loads(encoded) if encoded else {}
        return version

    def runs_for(
        self, instance: str | None = None, partition_key: str | None = None, newest: int | None = None
    ) -> list[dict[str, Any]]:
        """Run rows, oldest first, optionally for one instance and partition, or only the newest N."""
        query = sa.select(runs)
        if instance is not None:
            query = query.where(runs.c.instance == instance)
        if partition_key is not None:
            query = query.where(runs.c.partition_key == partition_key)
        if newest is not None:
            query = query.order_by(runs.c.started_at.desc(), runs.c.run_id.desc()).limit(newest)
        else:
            query = query.order_by(runs.c.started_at, runs.c.run_id)
        with self.engine.connect() as conn:
            rows = [_row(row) for row in conn.execute(query).mappings().all()]
        return rows[::-1] if newest is not None else rows

    def instances(self) -> list[str]:
        """Every source instance that has run at least once."""
        with self.engine.connect() as conn:
            return sorted(conn.execute(sa.select(runs.c.instance).distinct()).scalars())

    def source_of(self, instance: str) -> str | None:
        """The source an instance belongs to, from its health row or its runs; None if never seen."""
        with self.engine.connect() as conn:
            found = (
                conn.execute(sa.select(source_health.c.source).where(source_health.c.instance == instance)).scalar()
                or conn.execute(sa.select(runs.c.source).where(runs.c.instance == instance).limit(1)).scalar()
            )
        return str(found) if found else None

    def health(self, instance: str) -> dict[str, Any] | None:
        """The instance's health row (circuit, failures, last success), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(source_health).where(source_health.c.instance == instance)).mappings().first()
        return _row(row) if row else None

    def save_health(self, instance: str, source: str, **values: Any) -> None:
        """Insert or update the instance's health row with ``values``."""
        values["updated_at"] = _now()
        with self.engine.begin() as conn:
            updated = conn.execute(
                source_health.update().where(source_health.c.instance == instance).values(**values)
            ).rowcount
            if not updated:
                defaults = {"circuit_state": "closed", "consecutive_failures": 0}
                conn.execute(source_health.insert().values(instance=instance, source=source, **{**defaults, **values}))

    def get_state(self, instance: str, key: str) -> str | None:
        """A stored value of the instance (e.g. an incremental cursor), or None."""
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(source_state.c.value).where(source_state.c.instance == instance, source_state.c.key == key)
            ).scalar()

    def all_state(self, instance: str) -> dict[str, str]:
        """Every stored value of the instance, by key."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(source_state.c.key, source_state.c.value).where(source_state.c.instance == instance)
            ).all()
        return {str(k): str(v) for k, v in rows}

    def set_state(self, instance: str, key: str, value: str) -> None:
        """Store a value of the instance (insert or replace)."""
        with self.engine.begin() as conn:
            updated = conn.execute(
                source_state.update()
                .where(source_state.c.instance == instance, source_state.c.key == key)
                .values(value=value, updated_at=_now())
            ).rowcount
            if not updated:
                conn.execute(source_state.insert().values(instance=instance, key=key, value=value, updated_at=_now()))

    def delete_runs_before(self, cutoff: datetime) -> int:
        """Delete run rows that started before ``cutoff``; returns how many."""
        with self.engine.begin() as conn:
            return int(conn.execute(runs.delete().where(runs.c.started_at < cutoff)).rowcount)


def _insert_version(
    conn: sa.Connection,
    *,
    instance: str,
    partition_key: str,
    content_hash: str,
    batch_id: str,
    rows_by_table: Mapping[str, int],
    size: int,
    run_id: str,
    loaded_at: datetime,
) -> None:
    """Make a batch the partition's current version."""
    conn.execute(
        dataset_versions.insert().values(
            instance=instance,
            partition_key=partition_key,
            content_hash=content_hash,
            batch_id=batch_id,
            rows=sum(rows_by_table.values()),
            bytes=size,
            run_id=run_id,
            loaded_at=loaded_at,
            rows_by_table=json.dumps(dict(rows_by_table), sort_keys=True),
        )
    )
