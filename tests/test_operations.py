"""Operations end to end on real processes: `prefect server start`, the pool command,
`prefect deploy --all`, a process worker, `prefect deployment run`, and the catch-up policy.

The commands are the ones docs/operations.md tells operators to type.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.export_server import ExportServer
from devtools.generate import write_export
from devtools.replays import register_worldbank
from tests.prefect_server import REPO, api_request, prefect_server, process_worker, run_cli, worker_env

pytestmark = pytest.mark.server

DEPLOYMENTS = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
DAY = date(2026, 11, 22)


class Ops:
    """The running server, worker and export server, and how to talk to them."""

    def __init__(self, home: Path, api_url: str, exports: Path, replay: ExportServer) -> None:
        self.home = home
        self.api_url = api_url
        self.exports = exports
        self.replay = replay
        self.warehouse_home = home / "headwater"

    def env(self) -> dict[str, str]:
        env = worker_env(self.home, self.api_url, self.warehouse_home)
        env.update(HEADWATER_HTTP_BACKOFF_INITIAL_S="0.01", HEADWATER_HTTP_BACKOFF_MAX_S="0.05")
        return env

    def api(self, method: str, path: str, body: Any = None) -> Any:
        return api_request(self.api_url, method, path, body)

    def deployment(self, name: str) -> dict[str, Any]:
        [found] = [d for d in self.api("POST", "/deployments/filter", {}) if d["name"] == name]
        return dict(found)

    def wait_final(self, run_ids: list[str], timeout_s: float = 180) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            runs = {r: self.api("GET", f"/flow_runs/{r}") for r in run_ids}
            if all(run["state"]["type"] in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED") for run in runs.values()):
                return runs
            if time.monotonic() > deadline:
                states = {r: (run["name"], run["state"]["type"]) for r, run in runs.items()}
                log = (self.home / "worker.log").read_text()[-3000:]
                raise TimeoutError(f"runs not final: {states}\nworker log:\n{log}")
            time.sleep(1)


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ops]:
    home = tmp_path_factory.mktemp("ops")
    exports = home / "exports"
    exports.mkdir()
    with prefect_server(home) as api_url, ExportServer(exports) as replay:
        running = Ops(home, api_url, exports, replay)
        register_worldbank(replay)
        yield running


@pytest.fixture(scope="module")
def deployed(ops: Ops) -> Ops:
    setup = run_cli([sys.executable, "-m", "deployments.setup"], ops.env())
    assert setup.returncode == 0, setup.stderr
    deploy = run_cli([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], ops.env(), timeout=300)
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
    return ops


@pytest.fixture(scope="module")
def worker(deployed: Ops) -> Iterator[Ops]:
    with process_worker(deployed.home / "worker.log", deployed.env()):
        yield deployed


def test_pool_command_is_idempotent(ops: Ops) -> None:
    first = run_cli([sys.executable, "-m", "deployments.setup"], ops.env())
    second = run_cli([sys.executable, "-m", "deployments.setup"], ops.env())
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert "created work pool headwater" in first.stdout
    assert "created global concurrency limit headwater-warehouse-writes (2)" in first.stdout
    assert second.stdout.strip() == "work pools, queues and limits are up to date"
    queues = {q["name"]: q for q in ops.api("POST", "/work_pools/headwater/queues/filter", {})}
    assert {"sot", "agriculture", "realestate", "employment", "business", "maintenance", "environment"} <= set(queues)
    assert queues["maintenance"]["concurrency_limit"] == 1


def test_every_deployment_is_registered_with_its_schedules(deployed: Ops) -> None:
    registered = {d["name"]: d for d in deployed.api("POST", "/deployments/filter", {})}
    flows = {f["id"]: f["name"] for f in deployed.api("POST", "/flows/filter", {})}
    assert set(registered) == {d["name"] for d in DEPLOYMENTS}
    for declared in DEPLOYMENTS:
        deployment = registered[declared["name"]]
        entry_flow = declared["entrypoint"]
        assert flows[deployment["flow_id"]].startswith(("ingest-", "sot-", "source-", "retention", "watch-")), (
            entry_flow
        )
        schedules = {s["slug"]: s for s in deployment["schedules"]}
        for wanted in declared["schedules"]:
            got = schedules[wanted["slug"]]
            assert (got["schedule"]["cron"], got["schedule"]["timezone"], got["active"]) == (
                wanted["cron"],
                wanted["timezone"],
                True,
            )
        assert deployment["work_pool_name"] == "headwater"
        assert deployment["work_queue_name"] == declared["work_pool"]["work_queue_name"]
        assert deployment["global_concurrency_limit"]["limit"] == 1
    assert registered["sot-ethereum"]["schedules"][0]["schedule"]["cron"] == "0 1 * * *"
    assert registered["sot-bitcoin"]["parameters"] == {"network": "bitcoin", "window_days": 195}


def _deployment_run(ops: Ops, full_name: str, **params: str) -> str:
    args = [sys.executable, "-m", "prefect", "deployment", "run", full_name]
    for key, value in params.items():
        args += ["--param", f"{key}={value}"]
    result = run_cli(args, ops.env())
    assert result.returncode == 0, result.stdout + result.stderr
    return str(next(line.split()[-1] for line in result.stdout.splitlines() if "UUID" in line))


def _ledger(ops: Ops, instance: str) -> list[tuple[str, str]]:
    code = (
        "import json; from blocks.ledger import open_ledger\n"
        "with open_ledger() as l:\n"
        f"    print(json.dumps([(r['partition_key'], r['status']) for r in l.runs_for({instance!r})]))"
    )
    result = run_cli([sys.executable, "-c", code], ops.env())
    assert result.returncode == 0, result.stderr
    return [tuple(x) for x in json.loads(result.stdout)]


def _count(ops: Ops, sql: str) -> int:
    code = (
        "from blocks.warehouse import ClickHouseWarehouse\n"
        f"with ClickHouseWarehouse.from_settings().session() as c: print(c.command({sql!r}))"
    )
    result = run_cli([sys.executable, "-c", code], ops.env())
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip())


def test_worker_runs_the_sot_and_an_api_deployment(worker: Ops) -> None:
    write_export(worker.exports, "ethereum", DAY, 300)
    sot = _deployment_run(
        worker, "ingest-sot/sot-ethereum", processing_date=DAY.isoformat(), base_url=worker.replay.base_url
    )
    api = _deployment_run(
        worker,
        "ingest-worldbank/worldbank-business",
        countries='["JPN","USA"]',
        indicators='["NY.GDP.MKTP.CD"]',
        base_url=worker.replay.root_url,
    )
    runs = worker.wait_final([sot, api])
    assert {r["state"]["type"] for r in runs.values()} == {"COMPLETED"}, runs
    assert _count(worker, "SELECT count() FROM sot.raw_alerts WHERE network = 'ethereum'") == 300
    assert _count(worker, "SELECT count() FROM worldbank.indicator_values") == 50
    assert _ledger(worker, "sot-ethereum") == [(f"ethereum/{DAY}", "loaded")]
    assert _ledger(worker, "worldbank-business") == [("business", "loaded")]


def _late_runs(ops: Ops, deployment: str, hours_ago: list[int], **parameters: Any) -> list[str]:
    deployment_id = ops.deployment(deployment)["id"]
    ids = []
    for hours in hours_ago:
        when = (datetime.now(UTC) - timedelta(hours=hours)).isoformat()
        run = ops.api(
            "POST",
            f"/deployments/{deployment_id}/create_flow_run",
            {"parameters": parameters, "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": when}}},
        )
        ids.append(run["id"])
    return ids


def test_catch_up_latest_runs_only_the_newest_late_run(worker: Ops) -> None:
    oldest, middle, newest = _late_runs(
        worker,
        "worldbank-agriculture",
        [5, 3, 1],
        countries=["JPN", "USA"],
        indicators=["NY.GDP.MKTP.CD"],
        base_url=worker.replay.root_url,
    )
    runs = worker.wait_final([oldest, middle, newest])
    assert runs[newest]["state"]["type"] == "COMPLETED"
    for superseded in (oldest, middle):
        assert runs[superseded]["state"]["type"] == "CANCELLED"
        assert f"superseded by flow run {newest}" in runs[superseded]["state"]["message"]
        assert "catch-up policy 'latest'" in runs[superseded]["state"]["message"]
    assert _ledger(worker, "worldbank-agriculture") == [("agriculture", "loaded")]


def test_catch_up_all_runs_every_late_sot_run_for_its_own_day(worker: Ops) -> None:
    today = datetime.now(UTC)
    days = [(today - timedelta(hours=h)).date() for h in (50, 26)]
    for day in days:
        write_export(worker.exports, "torus", day, 40)
    ids = _late_runs(worker, "sot-torus", [50, 26], base_url=worker.replay.base_url)
    runs = worker.wait_final(ids)
    assert {r["state"]["type"] for r in runs.values()} == {"COMPLETED"}, runs
    assert sorted(_ledger(worker, "sot-torus")) == sorted((f"torus/{d}", "loaded") for d in days)
