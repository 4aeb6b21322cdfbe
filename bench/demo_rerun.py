"""Benchmark: the demo run twice on a fresh home; the second run finds every source unchanged.

    uv run python bench/demo_rerun.py

Starts a real ``prefect server start`` on 127.0.0.1 first (so the server's start-up is
not timed, as in the issue: "excluding the server start"), then runs
``python -m devtools.demo`` twice as a user would, each in a new process pointed at that
server, in one temporary ``HEADWATER_HOME``. Reports the wall time of each run (Python
start and imports included), the lines each printed, and, from the ledger, every run of
the rerun with its status and duration. Task runs per flow run come from the server.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(home: Path, api_url: str | None) -> dict[str, str]:
    """The environment of a fresh shell: no PREFECT_/HEADWATER_ settings but the scratch homes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HEADWATER_"))}
    env.update(
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        HEADWATER_HOME=str(home / "headwater"),
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def wait_healthy(api_url: str, timeout_s: float = 120) -> None:
    """Block until the server answers its health check."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"Prefect server at {api_url} did not start within {timeout_s:.0f}s")


def run_demo(env: dict[str, str]) -> tuple[float, int, int]:
    """One demo run: wall seconds, its exit code and the lines it printed (stdout and stderr)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "devtools.demo"], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
    return wall, done.returncode, len((done.stdout + done.stderr).splitlines())


def ledger_runs(env: dict[str, str], since: float) -> list[tuple[str, str, float]]:
    """(instance, status, seconds) of every ledger run that started after ``since`` (epoch seconds)."""
    code = (
        "import sys, json\n"
        "from datetime import datetime, UTC\n"
        "from blocks.ledger import open_ledger\n"
        "since = datetime.fromtimestamp(float(sys.argv[1]), UTC)\n"
        "with open_ledger() as ledger:\n"
        "    rows = ledger.runs_for(newest=500)\n"
        "out = [(r['instance'], r['status'], (r['finished_at'] - r['started_at']).total_seconds())\n"
        "       for r in rows if r['started_at'].replace(tzinfo=UTC) >= since and r['finished_at']]\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(since)], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    return [tuple(r) for r in json.loads(done.stdout.splitlines()[-1])]  # type: ignore[misc]


def task_runs(api_url: str) -> tuple[int, int]:
    """(flow runs, task runs) the server holds."""
    flows = httpx.post(f"{api_url}/flow_runs/count", json={}, timeout=30).json()
    tasks = httpx.post(f"{api_url}/task_runs/count", json={}, timeout=30).json()
    return int(flows), int(tasks)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="headwater-demo-bench-") as scratch:
        home = Path(scratch)
        port = free_port()
        api_url = f"http://127.0.0.1:{port}/api"
        server_log = (home / "server.log").open("wb")
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            env=clean_env(home, None),
            stdout=server_log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_healthy(api_url)
            env = clean_env(home, api_url)
            first, first_rc, first_lines = run_demo(env)
            flows_before, tasks_before = task_runs(api_url)
            since = time.time()
            second, second_rc, second_lines = run_demo(env)
            flows_after, tasks_after = task_runs(api_url)
            runs = ledger_runs(env, since)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print("Demo rerun benchmark (Prefect server started before, not timed)")
    print(f"  first run : {first:6.1f} s  exit {first_rc}  {first_lines} lines")
    print(f"  rerun     : {second:6.1f} s  exit {second_rc}  {second_lines} lines (target ≤ 10 s)")
    print(f"  rerun: {flows_after - flows_before} flow runs, {tasks_after - tasks_before} task runs")
    print(f"  rerun ledger runs ({len(runs)}), seconds from start to finish:")
    for instance, status, seconds in sorted(runs, key=lambda r: -r[2]):
        print(f"    {instance:<40} {status:<10} {seconds:6.2f}")
    print(f"    sum {sum(r[2] for r in runs):.2f} s")
    return 0 if first_rc == 0 and second_rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
