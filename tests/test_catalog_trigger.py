"""Change-triggered catalog runs on a real Prefect server with a process worker.

``python -m deployments.catalog`` deploys the ingestor, ``catalog-watch`` and the
automation; the watcher's probes then decide: a 304 runs nothing, a changed feed runs
the ingestor's deployment exactly once, and the run completes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools.export_server import ExportServer
from tests.prefect_server import (
    api_request,
    finished,
    prefect_server,
    process_worker,
    run_cli,
    wait_for,
    worker_env,
)
from tests.test_catalog import SHARDED_INDEX, write_config


@dataclass
class Watched:
    home: Path
    api_url: str
    config: Path
    exports: Path

    def env(self) -> dict[str, str]:
        env = worker_env(self.home, self.api_url, self.home / "headwater")
        env["HEADWATER_CATALOG_EMBEDDER"] = "tests.test_catalog:WordEmbedder"  # fast; the seam is what is tested
        return env

    def api(self, method: str, path: str, body: Any = None) -> Any:
        return api_request(self.api_url, method, path, body)

    def watch(self) -> str:
        done = run_cli(
            [sys.executable, "-m", "flows.catalog_watch", "--config", str(self.config)], self.env(), timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip()

    def catalog_runs(self) -> list[dict[str, Any]]:
        """Runs of the ingestor other than those its cron schedules ahead of time."""
        body = {"flows": {"name": {"any_": ["ingest-catalog"]}}}
        return [r for r in self.api("POST", "/flow_runs/filter", body) if not r["auto_scheduled"]]


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    home = tmp_path_factory.mktemp("catalog-server")
    exports = home / "exports"
    exports.mkdir()
    with ExportServer(exports) as feeds, prefect_server(home) as api_url:
        config = write_config(exports, SHARDED_INDEX, source_type="remote", root=f"{feeds.base_url}/data")
        server = Watched(home, api_url, config, exports)
        deployed = run_cli([sys.executable, "-m", "deployments.catalog", "--config", str(config)], server.env())
        assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]
        assert "created automation headwater-catalog-keystone" in deployed.stdout
        # The test drives the probes itself: a scheduled catalog-watch run (every 5 minutes
        # on the clock) racing them would see the change first.
        watch = server.api("GET", "/deployments/name/watch-catalog-feeds/catalog-watch")
        server.api("POST", f"/deployments/{watch['id']}/pause_deployment")
        with process_worker(home / "worker.log", server.env()):
            yield server


@pytest.mark.server
def test_a_changed_feed_runs_its_ingestor_once_and_a_304_runs_nothing(watched: Watched) -> None:
    assert watched.watch() == "catalog-keystone: unchanged"  # first probe: the baseline
    assert watched.watch() == "catalog-keystone: unchanged"  # 304 Not Modified
    time.sleep(8)  # time for an automation to act, had anything been emitted
    assert watched.catalog_runs() == []

    feed = watched.exports / "data" / "feed.jsonld"
    feed.write_text(json.dumps({**SHARDED_INDEX, "name": "changed"}))
    os.utime(feed, (time.time() + 5, time.time() + 5))  # Last-Modified moves by whole seconds
    assert watched.watch() == "catalog-keystone: changed"
    log = watched.home / "worker.log"
    [run] = wait_for("a run of catalog-keystone", watched.catalog_runs, 60, log)
    final = wait_for("the run to finish", lambda: finished(watched.api_url, run["id"]), 120, log)
    assert final["state"]["type"] == "COMPLETED", (watched.home / "worker.log").read_text()[-4000:]
    assert final["parameters"]["ingestor"] == "keystone"
    time.sleep(5)
    assert len(watched.catalog_runs()) == 1  # exactly one run
