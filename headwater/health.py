"""Source health: circuit breaker, reliability score, and two clocks per instance.

Circuit breaker, per source instance: ``closed`` → ``open`` after N consecutive failed
runs (``HEADWATER_CIRCUIT_THRESHOLD``, default 5, per-source overrides). While open, a
run makes no network call and is recorded ``skipped_circuit_open``. After the cooldown
one probe run is let through (``half_open``): success closes the circuit, failure opens
it again. ``python -m flows.health --reset NAME`` closes it by hand.

Reliability score: the recency-weighted success rate of the last
``HEADWATER_RELIABILITY_WINDOW`` (20) attempts: ``sum(w_i * ok_i) / sum(w_i)`` with
``w_i = 0.9**i`` for the i-th newest attempt, where ``loaded`` and ``unchanged`` count as
success and ``failed`` as failure (skipped and running attempts are left out). 1.0 means
every recent attempt succeeded; a failure now weighs more than one 20 runs ago.

Two clocks. The *run clock*: the expected cadence of an instance is the longest gap
between consecutive fire times of its deployment's schedules in ``prefect.yaml`` (or of
its catalog ingestor in ``ingestion.yaml``); with ``grace``
(``HEADWATER_FRESHNESS_GRACE_S``) an instance is on time while its last success (an
``unchanged`` run counts: the publisher had nothing new, we did fetch) is at most
cadence + grace old, ``late`` up to 2 × cadence + grace, then ``stale``; ``never`` when it
never succeeded. The *data clock*: the newest data time the warehouse holds for the
instance, read where the source declares it (``SourceSpec.data_clock``: SOT's
``processing_date``, fx's ``rate_date``, coffee's close date, OpenAQ's measurement time;
``_loaded_at`` otherwise).

One state per instance, the first that applies: ``damaged`` (the warehouse disagrees
with the ledger), ``never``, ``stale``, ``late``, ``degraded`` (on time, but served by a
fallback provider, with a quality score under ``HEADWATER_QUALITY_ALERT_THRESHOLD``,
last run ``repaired`` or ``partial``, or newest data older than the source's declared
``max_age``), ``fresh``; ``unscheduled`` for an instance without a schedule. The overall
status is the worst state over the deployed instances.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from io import StringIO
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import yaml
from clickhouse_connect.driver.client import Client
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field
from rich import box
from rich.console import Console
from rich.table import Table

from headwater import events
from headwater.catalog.config import load_ingestion
from headwater.errors import ConfigurationError
from headwater.ledger import FAILED, PARTIAL, REPAIRED, RUNNING, SKIPPED_CIRCUIT_OPEN, SUCCESSES, Ledger, runs
from headwater.loading import partition_filter, qualified, table_exists
from headwater.logs import run_logger
from headwater.providers import served_by
from headwater.reconcile import damaged_instances, is_dead, partition_of
from headwater.settings import Settings, get_settings
from headwater.spec import DataClock, SourceSpec

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
FRESH, LATE, STALE, NEVER, UNSCHEDULED = "fresh", "late", "stale", "never", "unscheduled"
DAMAGED = "damaged"
"""The warehouse does not hold the instance's loaded version, or a publish is unfinished: repaired by its next run."""
DEGRADED = "degraded"
"""On time, but not first-class: a fallback provider, low quality, a repair, a partial run or old data."""
STATES = (FRESH, UNSCHEDULED, DEGRADED, LATE, STALE, NEVER, DAMAGED)
"""Every state, best first: the overall status is the worst over the deployed instances."""
State = Literal["fresh", "unscheduled", "degraded", "late", "stale", "never", "damaged"]
DECAY = 0.9
FAILING_AFTER = 3


@dataclass(frozen=True)
class Gate:
    """Whether a run may go ahead, and whether it is the half-open probe."""

    allowed: bool
    probe: bool
    state: str
    reason: str = ""


def threshold_for(instance: str, source: str, settings: Settings) -> int:
    """The consecutive-failure threshold of an instance (instance override, source override, default)."""
    overrides = settings.circuit_thresholds
    return overrides.get(instance, overrides.get(source, settings.circuit_threshold))


def check_circuit(ledger: Ledger, instance: str, source: str, now: datetime | None = None) -> Gate:
    """Decide whether a run of ``instance`` may start; moves ``open`` to ``half_open`` after the cooldown."""
    settings = get_settings()
    now = now or datetime.now(UTC)
    health = ledger.health(instance)
    if not health or health["circuit_state"] == CLOSED:
        return Gate(allowed=True, probe=False, state=CLOSED)
    if health["circuit_state"] == HALF_OPEN:
        return Gate(allowed=True, probe=True, state=HALF_OPEN)
    opened = health["opened_at"] or now
    reopen_at = opened + timedelta(seconds=settings.circuit_cooldown_s)
    if now < reopen_at:
        return Gate(
            allowed=False,
            probe=False,
            state=OPEN,
            reason=(
                f"{instance}: circuit open since {opened:%Y-%m-%d %H:%M:%S} UTC after "
                f"{health['consecutive_failures']} consecutive failures; next probe after {reopen_at:%H:%M:%S} UTC"
            ),
        )
    ledger.save_health(instance, source, circuit_state=HALF_OPEN)
    events.emit(events.CIRCUIT_HALF_OPEN, instance, source, opened_at=opened.isoformat())
    return Gate(allowed=True, probe=True, state=HALF_OPEN)


def record_attempt(ledger: Ledger, instance: str, source: str, status: str, now: datetime | None = None) -> str:
    """Update the circuit after a run with ``status``; returns the new circuit state."""
    settings = get_settings()
    now = now or datetime.now(UTC)
    health = ledger.health(instance) or {"circuit_state": CLOSED, "consecutive_failures": 0}
    state = health["circuit_state"]
    if status in SUCCESSES:
        ledger.save_health(
            instance, source, circuit_state=CLOSED, consecutive_failures=0, last_attempt_at=now, last_success_at=now
        )
        if state != CLOSED:
            events.emit(events.CIRCUIT_CLOSED, instance, source, previous=state)
        return CLOSED
    if status != FAILED:
        return str(state)
    failures = int(health["consecutive_failures"]) + 1
    opens = state == HALF_OPEN or (state == CLOSED and failures >= threshold_for(instance, source, settings))
    new_state = OPEN if opens else state
    values: dict[str, Any] = {
        "circuit_state": new_state,
        "consecutive_failures": failures,
        "last_attempt_at": now,
        "last_failure_at": now,
    }
    if opens:
        values["opened_at"] = now
    ledger.save_health(instance, source, **values)
    if failures >= FAILING_AFTER:
        events.emit(events.SOURCE_FAILING, instance, source, consecutive_failures=failures)
    if opens:
        events.emit(events.CIRCUIT_OPENED, instance, source, consecutive_failures=failures)
    return new_state


def reset_circuit(ledger: Ledger, instance: str) -> None:
    """Close an instance's circuit by hand and clear its failure count."""
    health = ledger.health(instance)
    source = ledger.source_of(instance) or instance
    ledger.save_health(instance, source, circuit_state=CLOSED, consecutive_failures=0, opened_at=None)
    if health and health["circuit_state"] != CLOSED:
        events.emit(events.CIRCUIT_CLOSED, instance, source, previous=health["circuit_state"], manual=True)


def reliability(statuses: list[str]) -> float | None:
    """Recency-weighted success rate of attempts given oldest first; None without attempts."""
    attempts = [s for s in statuses if s in SUCCESSES or s == FAILED]
    if not attempts:
        return None
    weights = [DECAY**i for i in range(len(attempts))]
    newest_first = list(reversed(attempts))
    score = sum(w for w, s in zip(weights, newest_first, strict=True) if s in SUCCESSES) / sum(weights)
    return round(score, 4)


@lru_cache(maxsize=8)
def _schedules(path: Path, mtime: float) -> dict[str, tuple[tuple[str, str], ...]]:
    config = yaml.safe_load(path.read_text())
    found: dict[str, tuple[tuple[str, str], ...]] = {}
    for deployment in config.get("deployments") or []:
        crons = tuple(
            (s["cron"], s.get("timezone") or "UTC")
            for s in deployment.get("schedules") or []
            if s.get("cron") and s.get("active", True)
        )
        found[deployment["name"]] = crons
    return found


def deployment_schedules(settings: Settings | None = None) -> dict[str, tuple[tuple[str, str], ...]]:
    """Cron schedules (cron, timezone) per deployment name, read from ``prefect.yaml``."""
    path = (settings or get_settings()).prefect_yaml
    return _schedules(path, path.stat().st_mtime)


def source_deployments(settings: Settings | None = None) -> list[str]:
    """Deployments that ingest a source (tagged ``source`` in ``prefect.yaml``)."""
    path = (settings or get_settings()).prefect_yaml
    config = yaml.safe_load(path.read_text())
    return [d["name"] for d in config.get("deployments") or [] if "source" in (d.get("tags") or [])]


def cadence(schedules: tuple[tuple[str, str], ...], around: datetime) -> timedelta | None:
    """The longest gap between consecutive fire times of all schedules, over a year from ``around``."""
    if not schedules:
        return None
    fires: list[datetime] = []
    for cron, zone in schedules:
        iterator = croniter(cron, around.astimezone(ZoneInfo(zone)))
        horizon = around + timedelta(days=366)
        while True:
            fire = iterator.get_next(datetime)
            fires.append(fire.astimezone(UTC))
            if fire > horizon or len(fires) > 20_000:
                break
    fires.sort()
    return max(b - a for a, b in itertools.pairwise(fires)) if len(fires) > 1 else None


def freshness(last_success: datetime | None, every: timedelta | None, now: datetime, grace: timedelta) -> str:
    """``fresh``, ``late``, ``stale``, ``never`` (no success) or ``unscheduled`` (no cadence)."""
    if last_success is None:
        return NEVER
    if every is None:
        return UNSCHEDULED
    age = now - last_success
    if age <= every + grace:
        return FRESH
    if age <= 2 * every + grace:
        return LATE
    return STALE


def deployed_schedules(settings: Settings | None = None) -> dict[str, tuple[tuple[str, str], ...]]:
    """Schedules of every deployed source instance: ``prefect.yaml``'s source deployments and the catalog's ingestors.

    An instance not in here is *ad hoc* (run by hand or by the demo). A catalog
    ``ingestion.yaml`` that does not load leaves its ingestors out, with a warning.
    """
    settings = settings or get_settings()
    schedules = deployment_schedules(settings)
    deployed = {name: schedules.get(name, ()) for name in source_deployments(settings)}
    path = settings.ingestion_config
    if path.is_file():
        try:
            ingestors = load_ingestion(path)
        except ConfigurationError as error:
            run_logger().warning("health: catalog ingestors left out: %s", error)
        else:
            deployed.update({i.instance: ((i.schedule, "UTC"),) for i in ingestors.values()})
    return deployed


def _attempt_status(run: Mapping[str, Any]) -> str:
    """A run's status for reliability: a ``running`` row whose process is gone counts as ``failed``."""
    if run["status"] == RUNNING and is_dead(run):
        return FAILED
    return str(run["status"])


# --- the data clock: the newest data the warehouse holds for an instance ---


@dataclass(frozen=True)
class DataReading:
    """The newest data time of an instance, where it was read, and how old it may be."""

    time: datetime | None
    where: str
    max_age: timedelta | None = None


def data_clock_of(spec: SourceSpec) -> DataClock:
    """The source's declared data clock, else its ``date_column``, else ``_loaded_at``, of its first table."""
    if spec.data_clock is not None:
        return spec.data_clock
    return DataClock(next(iter(spec.tables)), spec.date_column or "_loaded_at")


def instance_filter(spec: SourceSpec, table: str, partition_key: str) -> str:
    """A ``WHERE`` condition selecting an instance's rows of ``table``, from one of its ledger partition keys.

    The partition columns other than ``date_column`` identify the instance (SOT's
    ``network``, coffee's ``symbol``); a merge table without them (OpenAQ) is read by
    the lineage prefix of the instance's batches (``openaq:seed:``).
    """
    partition = partition_of(spec, partition_key)
    columns = [c for c in spec.partition_columns if c != spec.date_column]
    if set(columns) <= set(spec.table(table).column_names):
        return partition_filter(partition, columns) or "1"
    if spec.date_column is None:
        prefix = f"{spec.name}:{partition_key}:".replace("'", "\\'")
        return f"startsWith(`_batch_id`, '{prefix}')"
    return "1"


def as_utc(value: date | datetime | None) -> datetime | None:
    """A Date (its midnight, UTC) or a DateTime as an aware UTC datetime; None stays None."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def newest_data_time(client: Client, spec: SourceSpec, database: str, partition_key: str) -> DataReading:
    """The newest data time of the instance whose partition key is ``partition_key`` (None: no rows, no table)."""
    clock = data_clock_of(spec)
    where = f"{database}.{clock.table}: {clock.expr}"
    if not table_exists(client, database, clock.table):
        return DataReading(None, where, clock.max_age)
    condition = instance_filter(spec, clock.table, partition_key)
    value = client.query(
        f"SELECT maxOrNull({clock.expr}) FROM {qualified(database, clock.table)} WHERE {condition}"
    ).result_rows[0][0]
    return DataReading(as_utc(value), where, clock.max_age)


def data_readings(
    ledger: Ledger, client: Client, sources: Mapping[str, tuple[SourceSpec, str]], instances: Sequence[str]
) -> dict[str, DataReading]:
    """The data clock of every instance that loaded data of a known source (the newest over its sources)."""
    readings: dict[str, DataReading] = {}
    for instance in instances:
        found = [
            newest_data_time(client, *sources[source], version["partition_key"])
            for source, version in ledger.latest_versions_by_source(instance).items()
            if source in sources
        ]
        if found:
            epoch = datetime.min.replace(tzinfo=UTC)
            readings[instance] = max(found, key=lambda r: r.time or epoch)
    return readings


# --- the health model: one row per instance, one report ---


class SourceHealth(BaseModel):
    """The health of one source instance (the ``--json`` rows and the HTTP API's items)."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="The source instance (a source deployment's name).")
    source: str | None = Field(description="The source it belongs to (None: never ran).")
    deployed: bool = Field(description="Deployed in prefect.yaml (or ingestion.yaml); false: an ad-hoc instance.")
    state: State = Field(description="damaged, never, stale, late, degraded, fresh, or unscheduled.")
    reasons: list[str] = Field(description="Why the state is not fresh, one line each.")
    circuit: str = Field(description="Circuit breaker: closed, open or half_open.")
    reliability: float | None = Field(description="Recency-weighted success rate of recent attempts, 0..1.")
    consecutive_failures: int = Field(description="Failed runs since the last success.")
    last_success: str | None = Field(description="When a run last succeeded (ISO 8601, UTC, seconds).")
    age_s: float | None = Field(description="Seconds since the last success (the run clock).")
    cadence_s: float | None = Field(description="Longest gap between scheduled runs, in seconds.")
    data_time: str | None = Field(description="Newest data time the warehouse holds (ISO 8601, UTC).")
    data_age_s: float | None = Field(description="Seconds since the newest data time (the data clock).")
    data_max_age_s: float | None = Field(description="Declared largest data age on time (None: not judged).")
    data_from: str | None = Field(description="Where the data time is read: database.table: expression.")
    served_by: str | None = Field(description="Provider of the current data (sources with a provider chain).")
    quality_score: float | None = Field(description="Quality score of the batch behind the current data.")
    last_status: str | None = Field(description="Status of the newest finished run.")
    last_rows: int | None = Field(description="Rows loaded by that run.")
    last_bytes: int | None = Field(description="Bytes downloaded by that run.")

    def as_dict(self) -> dict[str, Any]:
        """The row as a JSON-ready dict."""
        return self.model_dump(mode="json")


class HealthStatus(BaseModel):
    """The overall status: the worst state over the deployed instances (``GET /health/status``)."""

    generated_at: str = Field(description="When the report was computed (ISO 8601, UTC, seconds).")
    overall: State = Field(description="The worst state over deployed instances (fresh when none).")
    counts: dict[str, int] = Field(description="Deployed instances per state.")


class HealthReport(HealthStatus):
    """The overall status and every instance, deployed ones first (``--json``, ``GET /health/sources``)."""

    sources: list[SourceHealth] = Field(description="One entry per instance: deployed first, then ad hoc.")

    def find(self, name: str) -> SourceHealth | None:
        """The instance named ``name``, or None."""
        return next((s for s in self.sources if s.name == name), None)

    def status(self) -> HealthStatus:
        """The overall part of the report."""
        return HealthStatus(generated_at=self.generated_at, overall=self.overall, counts=self.counts)


def iso_seconds(moment: datetime | None) -> str | None:
    """``2026-11-23T20:15:02Z``: UTC, to the second."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_duration(seconds: float | None) -> str:
    """A duration in the largest unit it fills, rounded down: ``45 s``, ``7.4 min``, ``92 d``; ``-`` for None."""
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    unit, size = next((u, n) for u, n in (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1)) if seconds >= n or n == 1)
    value = seconds / size  # rounded down: "12 d old" until the 13th day is complete
    text = str(math.floor(value)) if value >= 10 else f"{math.floor(value * 10) / 10:.1f}".removesuffix(".0")
    return f"{text} {unit}"


def _run_by_id(ledger: Ledger, run_id: str) -> dict[str, Any] | None:
    with ledger.engine.connect() as conn:
        row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).mappings().first()
    return dict(row) if row else None


def _current_run(ledger: Ledger, instance: str) -> dict[str, Any] | None:
    """The run that loaded the instance's current data (its newest dataset version)."""
    versions = ledger.latest_versions_by_source(instance).values()
    newest = max(versions, key=lambda v: (v["loaded_at"], v["id"]), default=None)
    return _run_by_id(ledger, newest["run_id"]) if newest else None


def _providers(run: Mapping[str, Any] | None) -> tuple[str | None, list[str]]:
    """The provider that served a run's batch and the providers that failed before it (chain sources)."""
    notes = json.loads(run["notes"]) if run and run.get("notes") else {}
    winner, failed = served_by(notes if isinstance(notes, dict) else None)
    return winner, [provider for provider, _ in failed]


def degraded_reasons(
    current: Mapping[str, Any] | None,
    last: Mapping[str, Any] | None,
    data: DataReading | None,
    now: datetime,
    quality_threshold: float,
) -> list[str]:
    """Why an instance whose runs are on time is not first-class (empty: it is).

    ``current`` is the run behind the current data, ``last`` the newest finished run.
    """
    reasons = []
    winner, failed = _providers(current)
    if winner and failed:
        reasons.append(f"served by fallback {winner} ({', '.join(failed)} failed)")
    score = current.get("quality_score") if current else None
    if score is not None and score < quality_threshold:
        reasons.append(f"quality {score:.2f} below {quality_threshold:.2f}")
    if last and last["status"] in (REPAIRED, PARTIAL):
        what = "repaired the warehouse" if last["status"] == REPAIRED else "was partial"
        reasons.append(f"last run {what}: {str(last.get('error') or '')[:120]}".rstrip(": "))
    if data and data.time and data.max_age is not None and now - data.time > data.max_age:
        reasons.append(
            f"newest data {data.time:%Y-%m-%d} is {human_duration((now - data.time).total_seconds())} old"
            f" (expected at most {human_duration(data.max_age.total_seconds())})"
        )
    return reasons


def clock_reasons(
    state: str, age: timedelta | None, every: timedelta | None, last: Mapping[str, Any] | None
) -> list[str]:
    """Why the run clock says ``late``, ``stale`` or ``never``."""
    if state in (LATE, STALE) and age is not None and every is not None:
        since, expected = human_duration(age.total_seconds()), human_duration(every.total_seconds())
        return [f"last success {since} ago, expected every {expected}"]
    if state == NEVER:
        kind = f" ({last['error_kind']})" if last and last.get("error_kind") else ""
        return [f"no successful run; last run {last['status']}{kind}" if last else "no run yet"]
    return []


def state_of(clock: str, damaged: bool, degraded: bool) -> str:
    """One state: damaged, else the run clock when it is not on time, else degraded, else the clock."""
    if damaged:
        return DAMAGED
    if clock in (NEVER, STALE, LATE):
        return clock
    return DEGRADED if degraded else clock


def health_rows(
    ledger: Ledger,
    now: datetime | None = None,
    damage: Mapping[str, list[str]] | None = None,
    data: Mapping[str, DataReading] | None = None,
) -> list[SourceHealth]:
    """One health row per source instance: every deployed instance and every instance that ran.

    Deployed instances come first, then ad-hoc ones, each by name. ``damage`` (from
    :func:`headwater.reconcile.damaged_instances`) marks instances ``damaged``; ``data``
    (from :func:`data_readings`) gives the data clock.
    """
    damage, data = damage or {}, data or {}
    settings = get_settings()
    now = now or datetime.now(UTC)
    deployed = deployed_schedules(settings)
    grace = timedelta(seconds=settings.freshness_grace_s)
    names = sorted(set(deployed) | set(ledger.instances()), key=lambda n: (n not in deployed, n))
    rows = []
    for name in names:
        recent = ledger.runs_for(name, newest=settings.reliability_window)
        health = ledger.health(name) or {}
        last_success = health.get("last_success_at") or max(
            (r["finished_at"] for r in recent if r["status"] in SUCCESSES and r["finished_at"]), default=None
        )
        every = cadence(deployed.get(name, ()), now)
        finished = [r for r in recent if r["status"] not in (RUNNING, SKIPPED_CIRCUIT_OPEN)]
        last = finished[-1] if finished else None
        current = _current_run(ledger, name)
        reading = data.get(name)
        clock = freshness(last_success, every, now, grace)
        age = now - last_success if last_success else None
        degraded = degraded_reasons(current, last, reading, now, settings.quality_alert_threshold)
        state = state_of(clock, name in damage, bool(degraded))
        reasons = list(damage.get(name, [])) + clock_reasons(clock, age, every, last) + degraded
        newest = [r for r in recent if r["status"] != RUNNING]
        shown = newest[-1] if newest else None
        rows.append(
            SourceHealth(
                name=name,
                source=ledger.source_of(name),
                deployed=name in deployed,
                state=state,  # type: ignore[arg-type]
                reasons=reasons,
                circuit=health.get("circuit_state", CLOSED),
                reliability=reliability([_attempt_status(r) for r in recent]),
                consecutive_failures=int(health.get("consecutive_failures", 0)),
                last_success=iso_seconds(last_success),
                age_s=round(age.total_seconds()) if age is not None else None,
                cadence_s=every.total_seconds() if every else None,
                data_time=iso_seconds(reading.time) if reading else None,
                data_age_s=round((now - reading.time).total_seconds()) if reading and reading.time else None,
                data_max_age_s=reading.max_age.total_seconds() if reading and reading.max_age else None,
                data_from=reading.where if reading else None,
                served_by=_providers(current)[0],
                quality_score=current.get("quality_score") if current else None,
                last_status=shown["status"] if shown else None,
                last_rows=shown["rows_loaded"] if shown else None,
                last_bytes=shown["bytes"] if shown else None,
            )
        )
    return rows


def build_report(rows: Sequence[SourceHealth], now: datetime | None = None) -> HealthReport:
    """The report of ``rows``: the overall status is the worst state over deployed instances."""
    deployed = [r.state for r in rows if r.deployed and r.state != UNSCHEDULED]
    overall = max(deployed, key=STATES.index, default=FRESH)
    counts: dict[str, int] = {state: deployed.count(state) for state in STATES if state in deployed}
    return HealthReport(
        generated_at=iso_seconds(now or datetime.now(UTC)) or "",
        overall=overall,  # type: ignore[arg-type]
        counts=counts,
        sources=list(rows),
    )


def build_health_report(
    ledger: Ledger,
    client: Client,
    sources: Mapping[str, tuple[SourceSpec, str]],
    now: datetime | None = None,
) -> HealthReport:
    """The health report from an open ledger and warehouse client: both clocks, damage, overall status.

    ``sources`` maps a source name to its spec and database (``registered_sources``).
    """
    now = now or datetime.now(UTC)
    instances = ledger.instances()
    damage = damaged_instances(ledger, client, sources, instances)
    readings = data_readings(ledger, client, sources, instances)
    return build_report(health_rows(ledger, now, damage, readings), now)


# --- rendering: an aligned table for people, a short markdown table for the artifact ---

STATE_STYLES = {
    FRESH: "green",
    DEGRADED: "yellow",
    LATE: "yellow",
    STALE: "red",
    NEVER: "red",
    DAMAGED: "bold red",
    UNSCHEDULED: "dim",
}


AD_HOC_NOTE = "ad hoc: an instance not deployed in prefect.yaml (run by hand or by the demo), not in the overall status"


def _every(row: SourceHealth) -> str:
    """The cadence column: the deployed cadence, ``ad hoc`` when not deployed, ``-`` without a schedule."""
    if not row.deployed:
        return "ad hoc"
    return human_duration(row.cadence_s)


def render_health_table(report: HealthReport) -> Table:
    """The report as a rich table: aligned columns, human units, deployed instances first, ad-hoc ones marked."""
    table = Table(
        title=f"Source health: {report.overall} ({report.generated_at.replace('T', ' ').rstrip('Z')} UTC)",
        title_justify="left",
        caption=AD_HOC_NOTE if any(not row.deployed for row in report.sources) else None,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
    )
    for header, justify in (
        ("instance", "left"),
        ("state", "left"),
        ("circuit", "left"),
        ("reliability", "right"),
        ("failures", "right"),
        ("since success", "right"),
        ("data age", "right"),
        ("every", "right"),
        ("last status", "left"),
        ("rows", "right"),
        ("why", "left"),
    ):
        table.add_column(header, justify=justify, no_wrap=header != "why")  # type: ignore[arg-type]
    ad_hoc_started = False
    for row in report.sources:
        if not row.deployed and not ad_hoc_started:
            table.add_section()
            ad_hoc_started = True
        table.add_row(
            row.name,
            f"[{STATE_STYLES[row.state]}]{row.state}[/]",
            row.circuit,
            "-" if row.reliability is None else f"{row.reliability:.2f}",
            str(row.consecutive_failures),
            human_duration(row.age_s),
            human_duration(row.data_age_s),
            _every(row),
            row.last_status or "-",
            "-" if row.last_rows is None else f"{row.last_rows:,}",
            "; ".join(row.reasons),
        )
    return table


def health_table_text(report: HealthReport, width: int | None = None) -> str:
    """The rich table as plain text (no colours); ``width`` None: as wide as the content needs."""
    console = Console(file=StringIO(), width=width or 1000, color_system=None, highlight=False)
    console.print(render_health_table(report))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in str(text).splitlines()) + "\n"


def _cell(text: str, limit: int = 90) -> str:
    """A markdown table cell: pipes escaped, cut at ``limit`` characters."""
    text = text.replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def health_markdown(report: HealthReport) -> str:
    """The report as a short markdown table (the hourly artifact): six columns, human units."""
    counts = ", ".join(f"{n} {state}" for state, n in report.counts.items()) or "no deployed instance"
    lines = [
        f"**Overall: {report.overall}** ({counts}) at {report.generated_at.replace('T', ' ').rstrip('Z')} UTC",
        "",
        "| instance | state | since success | data age | every | why |",
        "|---|---|--:|--:|--:|---|",
    ]
    lines += [
        f"| {row.name} | {row.state} | {human_duration(row.age_s)} | {human_duration(row.data_age_s)} "
        f"| {_every(row)} | {_cell('; '.join(row.reasons))} |"
        for row in report.sources
    ]
    return "\n".join(lines) + "\n"
