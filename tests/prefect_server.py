"""A real ``prefect server start`` on 127.0.0.1, with its own home, stopped by its process id."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential_jitter

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(home: Path, api_url: str | None = None) -> dict[str, str]:
    """Environment for Prefect CLI processes talking to the test server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def worker_env(home: Path, api_url: str, headwater_home: Path) -> dict[str, str]:
    """Environment for a worker (and the flow runs it starts) on the test server: a fast-polling worker."""
    env = server_env(home, api_url)
    env.update(
        HEADWATER_HOME=str(headwater_home),
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_RUNNER_POLL_FREQUENCY="1",
    )
    return env


def _server_busy(error: BaseException) -> bool:
    """503/429 from a busy server, or a read that timed out on an idempotent GET."""
    if isinstance(error, httpx.TimeoutException):
        return error.request.method == "GET"
    return isinstance(error, httpx.HTTPStatusError) and error.response.status_code in (429, 503)


@retry(
    retry=retry_if_exception(_server_busy),
    stop=stop_after_attempt(6),
    wait=wait_exponential_jitter(initial=0.5, max=5),
    reraise=True,
)
def api_request(api_url: str, method: str, path: str, body: Any = None) -> Any:
    """One call of the test server's REST API; its JSON answer (None when empty).

    A busy server (503 while its SQLite database is locked, or 429; a GET that timed out
    on a loaded machine) is asked again, as Prefect's own client does; any other error
    fails at once.
    """
    response = httpx.request(method, f"{api_url}{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json() if response.content else None


@contextmanager
def prefect_server(home: Path, timeout_s: float = 90, *, ui: bool = False) -> Iterator[str]:
    """Start a Prefect server (with its UI when ``ui``); yield its API URL; stop it (and its children) afterwards."""
    port = free_port()
    env = server_env(home)
    if ui:
        env.update(PREFECT_UI_ENABLED="true", PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api")  # the UI asks this URL
    log = (home / "prefect-server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"prefect server exited early: {(home / 'prefect-server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("prefect server did not become healthy")
            time.sleep(0.5)
        yield api_url
    finally:
        stop_group(process)
        log.close()


def stop_group(process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """Stop a process started with ``start_new_session`` and its children: SIGTERM, then SIGKILL."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextmanager
def process_worker(log_path: Path, env: dict[str, str], pool: str = "headwater") -> Iterator[None]:
    """A ``prefect worker start --type process`` for ``pool`` while the block runs, logging to ``log_path``."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield
        finally:
            stop_group(process)


def run_cli(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run a command in the repo root and return the finished process."""
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def wait_for(what: str, check: Callable[[], Any], timeout_s: float, worker_log: Path) -> Any:
    """``check()``'s first truthy answer, asked every second; TimeoutError with the worker's log after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout_s:g} s\nworker log:\n{worker_log.read_text()[-3000:]}")
        time.sleep(1)
    return found


def finished(api_url: str, flow_run_id: str) -> dict[str, Any] | None:
    """The flow run once it is in a final state, else None."""
    run = api_request(api_url, "GET", f"/flow_runs/{flow_run_id}")
    return run if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None  # type: ignore[no-any-return]
