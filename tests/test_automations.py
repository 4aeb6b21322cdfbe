"""Automations as code: `python -m deployments.automations` against a real Prefect server and a real webhook."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
import yaml
from prefect.server.events.actions import SendNotification as ServerSendNotification

from deployments.automations import ALERTS, HEARTBEAT_FREQUENCY_S, ZOMBIE_AFTER_S, ZOMBIE_NAME, build
from headwater import events
from tests.prefect_server import REPO, prefect_server, run_cli, server_env

BLOCK = "custom-webhook/headwater-test"
ALERT_NAMES = {
    "headwater-flow-run-failed",
    "headwater-source-stale",
    "headwater-circuit-opened",
    "headwater-source-failing",
    "headwater-quality-low",
    "headwater-run-partial",
    "headwater-run-crashed",
    "headwater-source-repaired",
    "headwater-run-slow",
}
NAMES = ALERT_NAMES | {ZOMBIE_NAME}
TERMINAL = {f"prefect.flow-run.{state}" for state in ("Completed", "Failed", "Cancelled", "Crashed")}
ANY_SEVERITY = {events.SEVERITY_LABEL: ["info", "warning", "critical"]}
OFFLINE = ("--base-url", "http://127.0.0.1:9/exports")  # nothing listens on port 9: connection refused
SAVE_BLOCK = """
import sys
from prefect.blocks.notifications import CustomWebhookNotificationBlock
CustomWebhookNotificationBlock(
    name="headwater-test",
    url=sys.argv[1],
    method="POST",
    json_data={"subject": "{{subject}}", "body": "{{body}}", "block": "{{name}}"},
).save("headwater-test", overwrite=True)
"""


class Receiver:
    """A webhook receiver on 127.0.0.1 that records the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.posts.append(json.loads(raw or b"{}"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def wait_for(self, matches: Callable[[dict[str, Any]], bool], timeout_s: float = 90) -> dict[str, Any]:
        """The first recorded POST that ``matches``, polling until ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                found = [post for post in self.posts if matches(post)]
            if found:
                return found[0]
            time.sleep(0.5)
        raise AssertionError(f"no matching notification within {timeout_s}s; received {self.posts}")


@dataclass(frozen=True)
class AlertServer:
    """The running Prefect server, its home and the webhook receiver its block points at."""

    api_url: str
    home: Path
    receiver: Receiver

    def env(self, **headwater: str) -> dict[str, str]:
        """Subprocess environment: this server, no inherited HEADWATER_* except ``headwater``."""
        env = {k: v for k, v in server_env(self.home, self.api_url).items() if not k.startswith("HEADWATER_")}
        env.update({f"HEADWATER_{name.upper()}": value for name, value in headwater.items()})
        return env

    def automations(self) -> list[dict[str, Any]]:
        """Every automation on the server, read through the API."""
        response = httpx.post(f"{self.api_url}/automations/filter", json={}, timeout=30)
        response.raise_for_status()
        return list(response.json())

    def by_name(self) -> dict[str, dict[str, Any]]:
        """The automations keyed by name."""
        return {a["name"]: a for a in self.automations()}

    def apply(self, **headwater: str) -> Any:
        """Run ``python -m deployments.automations``."""
        return run_cli([sys.executable, "-m", "deployments.automations"], self.env(**headwater))

    def emit_and_receive(self, event: str, arguments: str) -> dict[str, Any]:
        """Emit ``events.emit(<event>, <arguments>)`` from a new process; the notification its automation sends."""
        emit = f"from headwater import events; events.emit({event!r}, {arguments})"
        emitted = run_cli([sys.executable, "-c", emit], self.env())
        assert emitted.returncode == 0, emitted.stderr
        return self.receiver.wait_for(lambda p: event in p.get("subject", ""))


@pytest.fixture(scope="module")
def alert_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertServer]:
    """A real Prefect server with a saved custom-webhook block pointing at a real receiver."""
    home = tmp_path_factory.mktemp("alerts")
    with Receiver() as receiver, prefect_server(home) as api_url:
        server = AlertServer(api_url, home, receiver)
        saved = run_cli([sys.executable, "-c", SAVE_BLOCK, receiver.url], server.env())
        assert saved.returncode == 0, saved.stderr
        yield server


@pytest.fixture(scope="module")
def first_apply(alert_server: AlertServer) -> Any:
    """The first run of the command, with the test block configured."""
    return alert_server.apply(alert_blocks=BLOCK)


def test_specs_cover_the_headwater_events_and_flow_run_failures() -> None:
    assert {spec.name for spec in ALERTS} == ALERT_NAMES
    expected = {
        events.SOURCE_STALE,
        events.CIRCUIT_OPENED,
        events.SOURCE_FAILING,
        events.QUALITY_LOW,
        events.RUN_PARTIAL,
        events.RUN_CRASHED,
        events.SOURCE_REPAIRED,
        events.RUN_SLOW,
        "prefect.flow-run.Failed",
        "prefect.flow-run.Crashed",
    }
    assert {event for spec in ALERTS for event in spec.events} == expected


def test_message_templates_are_valid_for_the_server() -> None:
    """The server validates the Jinja templates of a notification with its own sandbox."""
    for spec in ALERTS:
        [action] = build(spec, [uuid4()]).actions
        assert ServerSendNotification.model_validate(action.model_dump(mode="json"))


def test_a_minimum_severity_limits_the_event_alerts_not_the_flow_run_alert() -> None:
    by_name = {spec.name: spec for spec in ALERTS}

    slow = build(by_name["headwater-run-slow"], [uuid4()], "critical")
    failed = build(by_name["headwater-flow-run-failed"], [uuid4()], "critical")

    assert slow.trigger.match.model_dump() == {  # type: ignore[union-attr]
        "prefect.resource.id": "headwater.source.*",
        events.SEVERITY_LABEL: ["critical"],
    }
    assert failed.trigger.match.model_dump() == {"prefect.resource.id": "prefect.flow-run.*"}  # type: ignore[union-attr]
    assert "CRITICAL" in by_name["headwater-flow-run-failed"].subject


def test_every_deployment_heartbeats_as_often_as_the_watchdog_expects() -> None:
    """Workers start each run with the deployment's env: its heartbeat must come 3 times per window."""
    deployments = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    frequencies = {
        d["name"]: d["work_pool"]["job_variables"]["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] for d in deployments
    }
    assert set(frequencies.values()) == {str(HEARTBEAT_FREQUENCY_S)}
    assert ZOMBIE_AFTER_S == 3 * HEARTBEAT_FREQUENCY_S


@pytest.mark.server
def test_apply_creates_the_automations_once(alert_server: AlertServer, first_apply: Any) -> None:
    assert first_apply.returncode == 0, first_apply.stderr
    assert set(first_apply.stdout.split("\n")) - {""} == {f"created automation {name}" for name in NAMES}
    block = httpx.get(
        f"{alert_server.api_url}/block_types/slug/custom-webhook/block_documents/name/headwater-test", timeout=30
    ).json()
    found = alert_server.by_name()
    assert set(found) == NAMES
    failed = found["headwater-flow-run-failed"]
    assert failed["enabled"] is True
    assert failed["trigger"]["type"] == "event"
    assert set(failed["trigger"]["expect"]) == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    assert failed["trigger"]["match"] == {"prefect.resource.id": "prefect.flow-run.*"}
    assert (failed["trigger"]["posture"], failed["trigger"]["threshold"]) == ("Reactive", 1)
    circuit = found["headwater-circuit-opened"]
    assert circuit["trigger"]["expect"] == [events.CIRCUIT_OPENED]
    assert circuit["trigger"]["match"] == {"prefect.resource.id": "headwater.source.*", **ANY_SEVERITY}
    for name in ALERT_NAMES:
        [action] = found[name]["actions"]
        assert action["type"] == "send-notification"
        assert action["block_document_id"] == block["id"]
    assert found["headwater-run-partial"]["trigger"]["expect"] == [events.RUN_PARTIAL]
    assert found["headwater-run-partial"]["trigger"]["match"] == {
        "prefect.resource.id": "headwater.source.*",
        **ANY_SEVERITY,
    }
    [crash] = found[ZOMBIE_NAME]["actions"]
    assert crash["type"] == "change-flow-run-state"

    again = alert_server.apply(alert_blocks=BLOCK)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "automations are up to date"
    after = alert_server.automations()
    assert len(after) == len(NAMES)
    assert {a["id"] for a in after} == {a["id"] for a in found.values()}
    assert {a["updated"] for a in after} == {a["updated"] for a in found.values()}


@pytest.mark.server
def test_apply_repairs_drift_and_duplicates(alert_server: AlertServer, first_apply: Any) -> None:
    assert first_apply.returncode == 0, first_apply.stderr
    found = alert_server.by_name()
    quality = found["headwater-quality-low"]
    paused = httpx.patch(f"{alert_server.api_url}/automations/{quality['id']}", json={"enabled": False}, timeout=30)
    assert paused.status_code == 204, paused.text
    stale = found["headwater-source-stale"]
    copy = {k: v for k, v in stale.items() if k not in ("id", "created", "updated")}
    assert httpx.post(f"{alert_server.api_url}/automations/", json=copy, timeout=30).status_code == 201

    repaired = alert_server.apply(alert_blocks=BLOCK)

    assert repaired.returncode == 0, repaired.stderr
    assert set(repaired.stdout.strip().split("\n")) == {
        "updated automation headwater-quality-low",
        "kept automation headwater-source-stale (deleted 1 duplicate(s))",
    }
    after = alert_server.automations()
    assert sorted(a["name"] for a in after) == sorted(NAMES)
    assert all(a["enabled"] for a in after)


@pytest.mark.server
def test_a_failed_flow_run_sends_a_notification(alert_server: AlertServer, first_apply: Any, tmp_path: Path) -> None:
    assert first_apply.returncode == 0, first_apply.stderr
    env = alert_server.env(home=str(tmp_path / "home"), http_attempts="1")
    run = run_cli(
        [sys.executable, "-m", "flows.sot", "--network", "ethereum", "--date", "2026-11-22", *OFFLINE],
        env,
    )
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]

    post = alert_server.receiver.wait_for(lambda p: "sot ethereum 2026-11-22" in p.get("subject", ""))

    assert post["subject"] == "Headwater CRITICAL: flow run sot ethereum 2026-11-22 Failed"
    assert "Flow run ingest-sot/sot ethereum 2026-11-22 entered Failed" in post["body"]
    assert "Severity: critical" in post["body"]
    reason = run.stderr.strip().splitlines()[-1].removeprefix("error: ")
    assert reason.startswith("sot-ethereum 2026-11-22: http://127.0.0.1:9/exports/ethereum/2026-11-22/META.json")
    assert f"Reason: {reason}\n" in post["body"]  # the one-line reason, as the command printed it
    assert post["block"] == "headwater-test"


@pytest.mark.server
def test_a_circuit_opened_event_sends_a_notification(alert_server: AlertServer, first_apply: Any) -> None:
    assert first_apply.returncode == 0, first_apply.stderr
    post = alert_server.emit_and_receive(events.CIRCUIT_OPENED, "'sot-ethereum', 'sot', consecutive_failures=5")

    assert post["subject"] == f"Headwater CRITICAL: {events.CIRCUIT_OPENED} for sot-ethereum"
    assert "Severity: critical" in post["body"]
    assert f"{events.CIRCUIT_OPENED} for sot-ethereum (source sot)" in post["body"]
    assert "consecutive_failures: 5" in post["body"]
    assert "Automation: headwater-circuit-opened" in post["body"]


@pytest.mark.server
def test_a_run_partial_event_sends_a_notification(alert_server: AlertServer, first_apply: Any) -> None:
    assert first_apply.returncode == 0, first_apply.stderr
    post = alert_server.emit_and_receive(
        events.RUN_PARTIAL, "'openaq-seed', 'openaq', failures={'location 8118': 'HTTP 500'}"
    )

    assert post["subject"] == f"Headwater WARNING: {events.RUN_PARTIAL} for openaq-seed"
    assert "location 8118" in post["body"]
    assert "Automation: headwater-run-partial" in post["body"]


@pytest.mark.server
def test_a_slow_run_sends_a_warning(alert_server: AlertServer, first_apply: Any) -> None:
    assert first_apply.returncode == 0, first_apply.stderr
    post = alert_server.emit_and_receive(
        events.RUN_SLOW, "'worldbank-agriculture', 'worldbank', duration_s=75.2, threshold_s=60.0"
    )

    assert post["subject"] == f"Headwater WARNING: {events.RUN_SLOW} for worldbank-agriculture"
    assert "Severity: warning" in post["body"]
    assert "duration_s: 75.2" in post["body"]
    assert "Automation: headwater-run-slow" in post["body"]


@pytest.mark.server
def test_the_zombie_watchdog_is_applied_even_without_alert_blocks(alert_server: AlertServer, first_apply: Any) -> None:
    assert first_apply.returncode == 0, first_apply.stderr
    existing = alert_server.by_name()[ZOMBIE_NAME]
    deleted = httpx.delete(f"{alert_server.api_url}/automations/{existing['id']}", timeout=30)
    assert deleted.status_code == 204, deleted.text
    alerts = alert_server.by_name()

    applied = alert_server.apply()

    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.startswith("alerts are disabled")
    assert f"created automation {ZOMBIE_NAME}" in applied.stdout.splitlines()
    found = alert_server.by_name()
    assert set(found) == set(alerts) | {ZOMBIE_NAME}
    assert {name: found[name] for name in alerts} == alerts  # the alerts are left as they are
    watchdog = found[ZOMBIE_NAME]
    trigger = watchdog["trigger"]
    assert watchdog["enabled"] is True
    assert trigger["type"] == "event"
    assert trigger["after"] == ["prefect.flow-run.heartbeat"]
    assert set(trigger["expect"]) == {"prefect.flow-run.heartbeat"} | TERMINAL
    assert trigger["for_each"] == ["prefect.resource.id"]
    assert trigger["match"] == {"prefect.resource.id": "prefect.flow-run.*"}
    assert trigger["match_related"] == {"prefect.resource.role": "deployment"}
    assert (trigger["posture"], trigger["threshold"], trigger["within"]) == ("Proactive", 1, ZOMBIE_AFTER_S)
    assert ZOMBIE_AFTER_S == 3 * HEARTBEAT_FREQUENCY_S == 90
    [action] = watchdog["actions"]
    assert (action["type"], action["state"]) == ("change-flow-run-state", "CRASHED")
    assert "heartbeat stopped" in action["message"]

    again = alert_server.apply()

    assert again.returncode == 0, again.stderr
    assert ZOMBIE_NAME not in again.stdout
    assert alert_server.by_name()[ZOMBIE_NAME] == watchdog


@pytest.mark.server
def test_without_alert_blocks_alerts_are_disabled(alert_server: AlertServer, first_apply: Any) -> None:
    assert first_apply.returncode == 0, first_apply.stderr
    before = alert_server.automations()

    disabled = alert_server.apply()

    assert disabled.returncode == 0, disabled.stderr
    assert disabled.stdout.startswith("alerts are disabled: HEADWATER_ALERT_BLOCKS is empty")
    assert "existing automations left as they are" in disabled.stdout
    assert alert_server.automations() == before


@pytest.mark.server
def test_an_unknown_alert_block_fails_naming_it(alert_server: AlertServer, first_apply: Any) -> None:
    assert first_apply.returncode == 0, first_apply.stderr
    before = alert_server.automations()

    failed = alert_server.apply(alert_blocks=f"{BLOCK},custom-webhook/no-such-block")

    assert failed.returncode == 1
    assert "custom-webhook/no-such-block" in failed.stderr
    assert "not found" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert alert_server.automations() == before


class Api:
    """Plain calls to the test server's REST API."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url

    def __call__(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, f"{self.api_url}{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json() if response.content else None

    def running_run(self, flow_id: str, deployment_id: str | None) -> dict[str, Any]:
        """A new flow run (of the deployment, if given), forced into Running."""
        if deployment_id:
            run = self("POST", f"/deployments/{deployment_id}/create_flow_run", {})
        else:
            run = self("POST", "/flow_runs/", {"flow_id": flow_id})
        self(
            "POST",
            f"/flow_runs/{run['id']}/set_state",
            {"state": {"type": "RUNNING", "name": "Running"}, "force": True},
        )
        return dict(run)

    def heartbeat(self, run: dict[str, Any]) -> None:
        """Send the heartbeat event the flow engine sends (resource, and its deployment as related)."""
        related = (
            [
                {
                    "prefect.resource.id": f"prefect.deployment.{run['deployment_id']}",
                    "prefect.resource.role": "deployment",
                }
            ]
            if run.get("deployment_id")
            else []
        )
        event = {
            "id": str(uuid4()),
            "occurred": datetime.now(UTC).isoformat(),
            "event": "prefect.flow-run.heartbeat",
            "resource": {"prefect.resource.id": f"prefect.flow-run.{run['id']}", "prefect.resource.name": run["name"]},
            "related": related,
        }
        self("POST", "/events", [event])

    def state(self, run: dict[str, Any]) -> dict[str, Any]:
        """The flow run's current state."""
        return dict(self("GET", f"/flow_runs/{run['id']}")["state"])


@pytest.mark.server
def test_a_flow_run_whose_heartbeat_stops_is_marked_crashed(alert_server: AlertServer, first_apply: Any) -> None:
    """End to end on the server with a 10 s window (Prefect's least) instead of 90: silent → Crashed → alert.

    The heartbeats are sent as the engine sends them (same event, resource and related
    deployment) through the events API; the server's triggers, proactive evaluation and
    actions services do the rest.
    """
    assert first_apply.returncode == 0, first_apply.stderr
    name = "headwater-zombie-e2e"
    apply = f"from deployments.automations import ensure_zombie_watchdog; print(ensure_zombie_watchdog(10, {name!r}))"
    created = run_cli([sys.executable, "-c", apply], alert_server.env())
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == f"created automation {name}"
    api = Api(alert_server.api_url)
    flow = api("POST", "/flows/", {"name": "zombie-probe"})
    deployment = api("POST", "/deployments/", {"name": "zombie-probe", "flow_id": flow["id"]})
    silent = api.running_run(flow["id"], deployment["id"])  # one heartbeat, then nothing: a killed worker
    alive = api.running_run(flow["id"], deployment["id"])  # heartbeats every 2 s
    by_hand = api.running_run(flow["id"], None)  # no deployment: not watched (Prefect's default 180 s heartbeat)
    try:
        time.sleep(1)  # the automation is loaded by the triggers service
        for run in (silent, alive, by_hand):
            api.heartbeat(run)
        deadline = time.monotonic() + 45
        while api.state(silent)["type"] != "CRASHED":
            assert time.monotonic() < deadline, f"not Crashed within 45 s: {api.state(silent)}"
            time.sleep(2)
            api.heartbeat(alive)
        for _ in range(3):  # a few more seconds: the other runs' windows would have ended too
            time.sleep(2)
            api.heartbeat(alive)

        crashed = api.state(silent)
        assert crashed["name"] == "Crashed"
        assert "heartbeat stopped (none for 10 s)" in crashed["message"]
        assert api.state(alive)["type"] == "RUNNING"
        assert api.state(by_hand)["type"] == "RUNNING"
        post = alert_server.receiver.wait_for(
            lambda p: p.get("subject") == f"Headwater CRITICAL: flow run {silent['name']} Crashed"
        )
        assert "heartbeat stopped" in post["body"]
    finally:
        for run in (alive, by_hand):
            api("POST", f"/flow_runs/{run['id']}/set_state", {"state": {"type": "COMPLETED"}, "force": True})
        for automation in alert_server.automations():
            if automation["name"] == name:
                api("DELETE", f"/automations/{automation['id']}")
