"""Automations as code: ``python -m deployments.automations`` creates or updates Headwater's automations.

Each alert reacts to one kind of event and sends a notification to every block named in
``HEADWATER_ALERT_BLOCKS`` (``type-slug/name``, comma-separated, e.g.
``slack-webhook/alerts,custom-webhook/ops``). Idempotent: automations are matched by
name and only updated when their trigger, actions, description or enabled flag differ.

Every message starts with its severity (``headwater.events.SEVERITIES``: info, warning,
critical; a failed or crashed flow run is critical). ``HEADWATER_ALERT_MIN_SEVERITY``
(default ``info``) limits the alerts on Headwater events to that severity and above: the
triggers match the ``headwater.severity`` label of the event's resource.

With no alert blocks configured, alerts are disabled: no alert is created, updated or
deleted (an unset variable in an operator's shell must not wipe production alerts);
existing Headwater alerts are reported and left as they are.

Two kinds of automation are not alerts and are always applied: the zombie-run watchdog
(``headwater-zombie-flow-runs``), and per on-arrival file source of ``sources.yaml`` the
trigger that runs its deployment (``ingest-file-drop/<name>``) with each file the watcher
reports (``headwater-filedrop-<name>``; a source whose deployment does not exist yet is
skipped with a warning). Workers run flows with
``PREFECT_FLOWS_HEARTBEAT_FREQUENCY=30`` (``prefect.yaml``), so a deployment's flow run
sends ``prefect.flow-run.heartbeat`` every 30 s while it runs; when neither a heartbeat
nor a terminal state arrives within ``ZOMBIE_AFTER_S`` of the last heartbeat, the
server marks the run Crashed, and the ``headwater-flow-run-failed`` alert reports it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast
from uuid import UUID

from prefect import get_client
from prefect.automations import (
    Automation,
    ChangeFlowRunState,
    EventTrigger,
    Posture,
    RunDeployment,
    SendNotification,
)
from prefect.blocks.core import Block, UnknownBlockType
from prefect.client.schemas.objects import StateType
from prefect.events.schemas.events import ResourceSpecification
from prefect.exceptions import ObjectNotFound

from headwater import events
from headwater.errors import ConfigurationError
from headwater.events import Severity
from headwater.filedrop import load_config
from headwater.settings import get_settings

FLOW_RUN_SEVERITY = events.FLOW_RUN_FAILED_SEVERITY.upper()
FLOW_RUN_SUBJECT = f"Headwater {FLOW_RUN_SEVERITY}: flow run {{{{ flow_run.name }}}} {{{{ flow_run.state.name }}}}"
FLOW_RUN_BODY = (
    "Flow run {{ flow.name }}/{{ flow_run.name }} entered {{ flow_run.state.name }}"
    " at {{ flow_run.state.timestamp }}.\n"
    f"Severity: {events.FLOW_RUN_FAILED_SEVERITY}\n"
    "Reason: {{ flow_run.state.message }}\n"
    "Flow run id: {{ flow_run.id }}\n"
    "Link: {{ flow_run|ui_url or 'none (set PREFECT_UI_URL on the server)' }}"
)
SEVERITY = f"event.resource['{events.SEVERITY_LABEL}']"
EVENT_SUBJECT = f"Headwater {{{{ {SEVERITY} | upper }}}}: {{{{ event.event }}}} for {{{{ event.resource.name }}}}"
EVENT_BODY = (
    "{{ event.event }} for {{ event.resource.name }}"
    " (source {{ event.resource['headwater.source'] }}) at {{ event.occurred }}.\n"
    f"Severity: {{{{ {SEVERITY} }}}}\n"
    "{% for key, value in event.payload.items() %}{{ key }}: {{ value }}\n{% endfor %}"
    "Automation: {{ automation.name }}"
)
SOURCE_MATCH = {"prefect.resource.id": events.resource_id("*")}
FLOW_RUN_MATCH = {"prefect.resource.id": "prefect.flow-run.*"}

HEARTBEAT_FREQUENCY_S = 30
"""``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` of the workers' flow runs (``prefect.yaml``; Prefect's minimum)."""
ZOMBIE_AFTER_S = 3 * HEARTBEAT_FREQUENCY_S
"""Seconds without a heartbeat (nor a terminal state) after which a running flow run is marked Crashed."""
ZOMBIE_NAME = "headwater-zombie-flow-runs"
HEARTBEAT = "prefect.flow-run.heartbeat"
TERMINAL_EVENTS = tuple(f"prefect.flow-run.{state}" for state in ("Completed", "Failed", "Cancelled", "Crashed"))
DEPLOYMENT_RUN = {"prefect.resource.role": "deployment"}
"""Only flow runs of a deployment (started by a worker, which sets the heartbeat frequency) are watched:
a run started by hand (``python -m flows.X``) heartbeats at Prefect's default 180 s, which would look
silent to a 90 s window while it is healthy."""


@dataclass(frozen=True)
class AlertSpec:
    """One automation: which events on which resources, and the message it sends."""

    name: str
    description: str
    events: tuple[str, ...]
    match: dict[str, str]
    subject: str = EVENT_SUBJECT
    body: str = EVENT_BODY

    def trigger_match(self, min_severity: Severity) -> dict[str, str | list[str]]:
        """The resources it fires on: a Headwater event's only at ``min_severity`` or above (its label)."""
        if self.match != SOURCE_MATCH:
            return dict(self.match)
        return {**self.match, events.SEVERITY_LABEL: list(events.severities_from(min_severity))}


ALERTS = (
    AlertSpec(
        name="headwater-flow-run-failed",
        description="A flow run entered Failed or Crashed.",
        events=("prefect.flow-run.Failed", "prefect.flow-run.Crashed"),
        match=FLOW_RUN_MATCH,
        subject=FLOW_RUN_SUBJECT,
        body=FLOW_RUN_BODY,
    ),
    AlertSpec(
        name="headwater-source-stale",
        description="A source's last success is older than twice its cadence plus the grace period.",
        events=(events.SOURCE_STALE,),
        match=SOURCE_MATCH,
    ),
    AlertSpec(
        name="headwater-circuit-opened",
        description="A source's circuit breaker opened: its runs are skipped until the cooldown ends.",
        events=(events.CIRCUIT_OPENED,),
        match=SOURCE_MATCH,
    ),
    AlertSpec(
        name="headwater-source-failing",
        description="A source failed three or more times in a row.",
        events=(events.SOURCE_FAILING,),
        match=SOURCE_MATCH,
    ),
    AlertSpec(
        name="headwater-quality-low",
        description="A batch's quality score is below HEADWATER_QUALITY_ALERT_THRESHOLD.",
        events=(events.QUALITY_LOW,),
        match=SOURCE_MATCH,
    ),
    AlertSpec(
        name="headwater-run-partial",
        description="A run loaded only part of its batch (ledger status partial): some parts failed.",
        events=(events.RUN_PARTIAL,),
        match=SOURCE_MATCH,
    ),
    AlertSpec(
        name="headwater-run-crashed",
        description="A run's process died without recording an outcome (found by the next run of the source).",
        events=(events.RUN_CRASHED,),
        match=SOURCE_MATCH,
    ),
    AlertSpec(
        name="headwater-run-slow",
        description="A source run took longer than HEADWATER_SLOW_RUN_S (default 60 s).",
        events=(events.RUN_SLOW,),
        match=SOURCE_MATCH,
    ),
    AlertSpec(
        name="headwater-source-repaired",
        description="The warehouse disagreed with the ledger (a crashed publish, doubled or lost rows); repaired.",
        events=(events.SOURCE_REPAIRED,),
        match=SOURCE_MATCH,
    ),
)


class AlertBlockError(Exception):
    """A configured alert block is malformed, missing or not a notification block."""


def block_document_id(ref: str) -> UUID:
    """The block document id of the notification block ``type-slug/name``."""
    slug, _, name = ref.partition("/")
    if not slug or not name:
        raise AlertBlockError(f"alert block {ref!r} is not of the form type-slug/name (e.g. slack-webhook/alerts)")
    try:
        block = cast(Block, Block.load(ref))
    except ValueError as exc:
        if isinstance(exc.__cause__, ObjectNotFound):
            raise AlertBlockError(f"alert block {ref!r} not found: no block named {name!r} of type {slug!r}") from exc
        # A validation error may quote the block's fields (secrets): name only its kind.
        raise AlertBlockError(f"alert block {ref!r} could not be loaded ({type(exc).__name__})") from None
    except UnknownBlockType as exc:
        raise AlertBlockError(f"alert block {ref!r} has a type this environment lacks: {exc}") from exc
    if "notify" not in block.get_block_capabilities() or block._block_document_id is None:
        raise AlertBlockError(f"alert block {ref!r} is not a notification block")
    return block._block_document_id


def build(spec: AlertSpec, block_ids: list[UUID], min_severity: Severity = events.INFO) -> Automation:
    """The automation a spec describes, notifying every block in ``block_ids`` of events at ``min_severity`` or up."""
    return Automation(
        name=spec.name,
        description=spec.description,
        enabled=True,
        trigger=EventTrigger(
            expect=set(spec.events),
            match=ResourceSpecification.model_validate(spec.trigger_match(min_severity)),
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[SendNotification(block_document_id=i, subject=spec.subject, body=spec.body) for i in block_ids],
    )


def build_zombie_watchdog(within_s: float = ZOMBIE_AFTER_S, name: str = ZOMBIE_NAME) -> Automation:
    """The automation that marks a deployment's flow run Crashed when its heartbeat stops.

    Proactive, one bucket per flow run: the first heartbeat opens a ``within_s`` window,
    each further heartbeat opens a new one, a terminal state closes it; a window that ends
    empty fires ``ChangeFlowRunState`` to Crashed. ``within_s`` is at least 10 (Prefect's minimum for
    proactive triggers); tests pass that to see a run crash quickly.
    """
    return Automation(
        name=name,
        description=(
            f"Marks a deployment's flow run Crashed when it sent no heartbeat for {within_s:g} s"
            f" (workers send one every {HEARTBEAT_FREQUENCY_S} s) and reached no terminal state."
        ),
        enabled=True,
        trigger=EventTrigger(
            after={HEARTBEAT},
            expect={HEARTBEAT, *TERMINAL_EVENTS},
            match=ResourceSpecification.model_validate(FLOW_RUN_MATCH),
            match_related=ResourceSpecification.model_validate(DEPLOYMENT_RUN),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=within_s),
        ),
        actions=[
            ChangeFlowRunState(
                name="Crashed",
                state=StateType.CRASHED,
                force=False,  # a run that already ended keeps its terminal state
                message=(
                    f"Headwater: the flow run's heartbeat stopped (none for {within_s:g} s);"
                    " the process running it died or hung. Marked Crashed by the zombie-run automation."
                ),
            )
        ],
    )


FILE_DROP_FLOW = "ingest-file-drop"
FILE_DROP_PREFIX = "headwater-filedrop-"


def run_on_event(
    name: str, description: str, event: str, instance: str, deployment_id: UUID, parameters: dict[str, Any] | None
) -> Automation:
    """An automation that runs a deployment on each ``event`` about ``instance``."""
    return Automation(
        name=name,
        description=description,
        enabled=True,
        trigger=EventTrigger(
            expect={event},
            match=ResourceSpecification.model_validate({"prefect.resource.id": events.resource_id(instance)}),
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            RunDeployment(source="selected", deployment_id=deployment_id, parameters=parameters, job_variables=None)
        ],
    )


def build_file_drop_trigger(source: str, deployment_id: UUID) -> Automation:
    """The automation that runs a file source's deployment with each file the watcher reports arrived."""
    return run_on_event(
        f"{FILE_DROP_PREFIX}{source}",
        f"Runs {FILE_DROP_FLOW}/{source} with the file of each {events.FILEDROP_ARRIVED} of {source}.",
        events.FILEDROP_ARRIVED,
        source,
        deployment_id,
        {"file": {"__prefect_kind": "jinja", "template": "{{ event.payload.path }}"}},
    )


CATALOG_PREFIX = "headwater-catalog-"


def build_catalog_trigger(instance: str, deployment_id: UUID) -> Automation:
    """The automation that runs a catalog ingestor's deployment when the watcher reports its feed changed."""
    return run_on_event(
        f"{CATALOG_PREFIX}{instance.removeprefix('catalog-')}",
        f"Runs {instance} on each {events.CATALOG_FEED_CHANGED} of {instance}.",
        events.CATALOG_FEED_CHANGED,
        instance,
        deployment_id,
        None,
    )


def ensure_file_drop_triggers(config_path: str | None = None) -> tuple[list[str], list[str]]:
    """Create or update the trigger of every on-arrival file source whose deployment exists.

    Returns what changed and, one line each, the sources skipped because their deployment
    is not deployed yet.
    """
    changes: list[str] = []
    skipped: list[str] = []
    for source in load_config(config_path).values():
        if not source.on_arrival:
            continue
        deployment = f"{FILE_DROP_FLOW}/{source.name}"
        try:
            with get_client(sync_client=True) as client:
                deployment_id = client.read_deployment_by_name(deployment).id
        except ObjectNotFound:
            skipped.append(f"file source {source.name} arrives on events, but deployment {deployment} does not exist")
            continue
        if change := apply(build_file_drop_trigger(source.name, deployment_id)):
            changes.append(change)
    return changes, skipped


def _comparable(automation: Automation) -> dict[str, Any]:
    """The parts of an automation this module owns, in a form that compares by value."""
    return automation.model_dump(include={"description", "enabled", "trigger", "actions"})


def existing_automations(name: str) -> list[Automation]:
    """Every automation on the server named exactly ``name``, most recently updated first."""
    with get_client(sync_client=True) as client:
        found = client.read_automations_by_name(name=name)
    return [Automation(**a.model_dump()) for a in found if a.name == name]


def apply(desired: Automation) -> str | None:
    """Create or update one automation by name (dropping duplicates); returns what changed, or None."""
    found = existing_automations(desired.name)
    if not found:
        desired.create()
        return f"created automation {desired.name}"
    current, *duplicates = found
    for duplicate in duplicates:
        duplicate.delete()
    dropped = f" (deleted {len(duplicates)} duplicate(s))" if duplicates else ""
    if _comparable(current) == _comparable(desired):
        return f"kept automation {desired.name}{dropped}" if duplicates else None
    desired.id = current.id
    desired.update()
    return f"updated automation {desired.name}{dropped}"


def ensure_automations(
    block_refs: list[str], specs: tuple[AlertSpec, ...] = ALERTS, min_severity: Severity = events.INFO
) -> list[str]:
    """Create or update every spec's automation; returns what changed, one line each."""
    block_ids = [block_document_id(ref) for ref in block_refs]
    changes = [apply(build(spec, block_ids, min_severity)) for spec in specs]
    return [change for change in changes if change]


def ensure_zombie_watchdog(within_s: float = ZOMBIE_AFTER_S, name: str = ZOMBIE_NAME) -> str | None:
    """Create or update the zombie-run automation (with or without alert blocks); returns what changed."""
    return apply(build_zombie_watchdog(within_s, name))


def present(specs: tuple[AlertSpec, ...] = ALERTS) -> list[str]:
    """Names of the specs' automations that exist on the server."""
    return [spec.name for spec in specs if existing_automations(spec.name)]


def main() -> int:
    """Apply the automations and print what changed; exit 1 when an alert block is unusable.

    The zombie-run watchdog is applied in every case (it is not a notification); the
    alerts only when alert blocks are configured and all of them are usable.
    """
    refs = get_settings().alert_blocks
    watchdog = ensure_zombie_watchdog()
    try:
        file_drops, skipped = ensure_file_drop_triggers()
    except ConfigurationError as exc:  # a broken sources.yaml must not keep the alerts from being applied
        file_drops, skipped, failed = [], [], 1
        print(f"error: {exc}", file=sys.stderr)
    else:
        failed = 0
    for line in skipped:
        print(f"warning: {line}", file=sys.stderr)
    always = [change for change in (watchdog, *file_drops) if change]
    if not refs:
        print("alerts are disabled: HEADWATER_ALERT_BLOCKS is empty; no alert automations created or changed")
        if left := present():
            print(f"existing automations left as they are: {', '.join(left)}")
        for change in always:
            print(change)
        return failed
    try:
        changes = ensure_automations(refs, min_severity=get_settings().alert_min_severity)
    except AlertBlockError as exc:
        for change in always:
            print(change)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    changes = [*always, *changes]
    print("\n".join(changes) if changes else "automations are up to date")
    return failed


if __name__ == "__main__":
    sys.exit(main())
