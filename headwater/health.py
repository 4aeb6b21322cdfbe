"""Source health: circuit breaker, reliability score, freshness against the schedule.

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

Freshness: the expected cadence of an instance is the longest gap between consecutive
fire times of its deployment's schedules in ``prefect.yaml``; with ``grace``
(``HEADWATER_FRESHNESS_GRACE_S``) a source is ``fresh`` while its last success (an
``unchanged`` run counts: the publisher had nothing new, we did fetch) is at most
cadence + grace old, ``late`` up to 2 × cadence + grace, then ``stale``; ``never`` when it
never succeeded.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from croniter import croniter

from headwater import events
from headwater.ledger import FAILED, RUNNING, SUCCESSES, Ledger
from headwater.reconcile import is_dead
from headwater.settings import Settings, get_settings

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
FRESH, LATE, STALE, NEVER, UNSCHEDULED = "fresh", "late", "stale", "never", "unscheduled"
DAMAGED = "damaged"
"""The warehouse does not hold the instance's loaded version, or a publish is unfinished: repaired by its next run."""
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


def _attempt_status(run: Mapping[str, Any]) -> str:
    """A run's status for reliability: a ``running`` row whose process is gone counts as ``failed``."""
    if run["status"] == RUNNING and is_dead(run):
        return FAILED
    return str(run["status"])


@dataclass(frozen=True)
class SourceHealth:
    """One row of the health view."""

    name: str
    state: str
    circuit: str
    reliability: float | None
    consecutive_failures: int
    last_success: str | None
    age_s: float | None
    cadence_s: float | None
    last_status: str | None
    last_rows: int | None
    last_bytes: int | None

    def as_dict(self) -> dict[str, Any]:
        """The row as a JSON-ready dict."""
        return asdict(self)


def health_rows(
    ledger: Ledger, now: datetime | None = None, damage: Mapping[str, list[str]] | None = None
) -> list[SourceHealth]:
    """One health row per source instance: every source deployment and every instance that ran.

    ``damage`` (from :func:`headwater.reconcile.damaged_instances`) marks instances whose
    warehouse state disagrees with the ledger ``damaged``, whatever their freshness.
    """
    damage = damage or {}
    settings = get_settings()
    now = now or datetime.now(UTC)
    schedules = deployment_schedules(settings)
    names = sorted(set(source_deployments(settings)) | set(ledger.instances()))
    grace = timedelta(seconds=settings.freshness_grace_s)
    rows = []
    for name in names:
        recent = ledger.runs_for(name, newest=settings.reliability_window)
        health = ledger.health(name) or {}
        last_success = health.get("last_success_at") or max(
            (r["finished_at"] for r in recent if r["status"] in SUCCESSES and r["finished_at"]), default=None
        )
        every = cadence(schedules.get(name, ()), now)
        finished = [r for r in recent if r["status"] != "running"]
        last = finished[-1] if finished else None
        rows.append(
            SourceHealth(
                name=name,
                state=DAMAGED if name in damage else freshness(last_success, every, now, grace),
                circuit=health.get("circuit_state", CLOSED),
                reliability=reliability([_attempt_status(r) for r in recent]),
                consecutive_failures=int(health.get("consecutive_failures", 0)),
                last_success=last_success.isoformat() if last_success else None,
                age_s=round((now - last_success).total_seconds(), 1) if last_success else None,
                cadence_s=every.total_seconds() if every else None,
                last_status=last["status"] if last else None,
                last_rows=last["rows_loaded"] if last else None,
                last_bytes=last["bytes"] if last else None,
            )
        )
    return rows
