"""`prefect deploy --all` against a real local Prefect server, checked through its API."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.prefect_server import REPO, prefect_server, run_cli, server_env

EXPECTED = {
    "sot-ethereum": ("ingest-sot", "sot-ethereum-daily", "0 1 * * *"),
    "sot-bitcoin": ("ingest-sot", "sot-bitcoin-daily", "15 1 * * *"),
    "sot-torus": ("ingest-sot", "sot-torus-daily", "30 1 * * *"),
    "sot-retry-sweep": ("sot-retry-sweep", "sot-retry-sweep-daily", "0 3 * * *"),
    "health": ("source-health", "health-hourly", "5 * * * *"),
    "retention": ("retention", "retention-weekly", "30 4 * * 0"),
    "worldbank-agriculture": ("ingest-worldbank", "worldbank-agriculture-annual", "0 2 1 1 *"),
    "worldbank-employment": ("ingest-worldbank", "worldbank-employment-annual", "15 2 1 1 *"),
    "worldbank-business": ("ingest-worldbank", "worldbank-business-annual", "30 2 1 1 *"),
    "faostat-qcl": ("ingest-faostat", "faostat-qcl-quarterly", "0 3 1 1,4,7,10 *"),
    "ilostat-une-deap-sex-age-rt-a": ("ingest-ilostat", "ilostat-une-deap-sex-age-rt-a-annual", "0 4 1 2 *"),
    "ilostat-emp-nifl-sex-rt-a": ("ingest-ilostat", "ilostat-emp-nifl-sex-rt-a-annual", "15 4 1 2 *"),
    "osm-bj": ("ingest-osm", "osm-bj-monthly", "0 5 2 * *"),
}
QUEUES = {
    "health": "maintenance",
    "retention": "maintenance",
    "worldbank-agriculture": "agriculture",
    "worldbank-employment": "employment",
    "worldbank-business": "business",
    "faostat-qcl": "agriculture",
    "ilostat-une-deap-sex-age-rt-a": "employment",
    "ilostat-emp-nifl-sex-rt-a": "employment",
    "osm-bj": "realestate",
}


def test_prefect_yaml_declares_the_sot_schedules() -> None:
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    found = {
        d["name"]: (d["schedules"][0]["slug"], d["schedules"][0]["cron"], d["schedules"][0]["timezone"])
        for d in config["deployments"]
    }
    for name, (_, slug, cron) in EXPECTED.items():
        assert found[name] == (slug, cron, "UTC")


@pytest.mark.server
def test_deploy_all_against_a_real_server(tmp_path: Path) -> None:
    with prefect_server(tmp_path) as api_url:
        env = server_env(tmp_path, api_url)
        setup = run_cli([sys.executable, "-m", "deployments.setup"], env)
        assert setup.returncode == 0, setup.stderr
        assert "created work pool headwater" in setup.stdout
        again = run_cli([sys.executable, "-m", "deployments.setup"], env)
        assert again.stdout.strip() == "work pools and queues are up to date", again.stderr

        deploy = run_cli([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], env)
        assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]

        deployments = httpx.post(f"{api_url}/deployments/filter", json={}, timeout=30).json()
        flows = {f["id"]: f["name"] for f in httpx.post(f"{api_url}/flows/filter", json={}, timeout=30).json()}
        by_name = {d["name"]: d for d in deployments}
        assert set(by_name) == set(EXPECTED)
        for name, (flow_name, slug, cron) in EXPECTED.items():
            deployment = by_name[name]
            assert flows[deployment["flow_id"]] == flow_name
            [schedule] = deployment["schedules"]
            assert schedule["slug"] == slug
            assert schedule["active"] is True
            assert (schedule["schedule"]["cron"], schedule["schedule"]["timezone"]) == (cron, "UTC")
            queue = QUEUES.get(name, "sot")
            assert (deployment["work_pool_name"], deployment["work_queue_name"]) == ("headwater", queue)
            assert deployment["global_concurrency_limit"]["limit"] == 1
        assert by_name["sot-bitcoin"]["parameters"] == {"network": "bitcoin", "window_days": 195}
