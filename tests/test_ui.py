"""The Prefect UI, rendered by a real headless Chromium, shows a failed run's one-line reason and its summary.

A real ``prefect server start`` with its UI, a failing ``python -m flows.sot`` against it,
then Chromium driven over the DevTools protocol: ``--dump-dom`` alone is not enough,
because the UI cuts a state message after 70 characters ("See More") and renders an
artifact card only once its virtual-scroller chunk is in the viewport.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect
from websockets.sync.connection import Connection

from tests.prefect_server import api_request, prefect_server, run_cli, server_env, stop_group

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,2000",  # tall enough that the artifact card's chunk is rendered
)
REFUSED = "http://127.0.0.1:9/exports"  # nothing listens on port 9: connection refused

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's chromium (CI installs it: ``.ci/run``); skipped elsewhere when it is missing."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("CI must provide chromium (apt-get install chromium)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return CHROMIUM


class Page:
    """One Chromium tab over the DevTools protocol: evaluate JavaScript, wait for text, click."""

    def __init__(self, socket: Connection) -> None:
        self.socket = socket
        self.ids = count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one protocol command and return its result (events in between are skipped)."""
        call_id = next(self.ids)
        self.socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=30))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message["result"])

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def text(self) -> str:
        """The page's rendered text."""
        return str(self.evaluate("document.body ? document.body.innerText : ''"))

    def wait_for_text(self, wanted: str, timeout_s: float = 30) -> str:
        """The page's text once it contains ``wanted``."""
        deadline = time.monotonic() + timeout_s
        while wanted not in (text := self.text()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{wanted!r} not rendered within {timeout_s:g} s; the page shows:\n{text}")
            time.sleep(0.2)
        return text

    def click(self, selector: str, timeout_s: float = 30) -> None:
        """Click the first element matching ``selector`` once it exists."""
        script = f"(e => e ? (e.click(), true) : false)(document.querySelector({json.dumps(selector)}))"
        deadline = time.monotonic() + timeout_s
        while not self.evaluate(script):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {selector} within {timeout_s:g} s; the page shows:\n{self.text()}")
            time.sleep(0.2)


@contextmanager
def browser_page(chromium: Path, url: str) -> Iterator[Page]:
    """A headless Chromium showing ``url``, driven through its DevTools socket; stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        process = subprocess.Popen(
            [str(chromium), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 30
            while not port_file.exists() or not port_file.read_text().strip():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("chromium did not open its DevTools port")
                time.sleep(0.05)
            port = port_file.read_text().split()[0]
            [tab] = [t for t in httpx.get(f"http://127.0.0.1:{port}/json", timeout=10).json() if t["type"] == "page"]
            with connect(tab["webSocketDebuggerUrl"], max_size=None) as socket:
                yield Page(socket)
        finally:
            stop_group(process, timeout_s=10)


def test_the_flow_run_page_shows_the_reason_and_the_summary(chromium: Path, tmp_path: Path) -> None:
    with prefect_server(tmp_path, ui=True) as api_url:
        root = api_url.removesuffix("/api")
        env = server_env(tmp_path, f"{root}/api")
        env = {k: v for k, v in env.items() if not k.startswith("HEADWATER_")}
        env.update(HEADWATER_HOME=str(tmp_path / "home"), HEADWATER_HTTP_ATTEMPTS="1")
        run = run_cli([sys.executable, "-m", "flows.sot", "--network", "ethereum", "--date", "2026-11-22",
                       "--base-url", REFUSED], env)  # fmt: skip
        assert run.returncode == 1, run.stderr[-2000:]
        reason = run.stderr.strip().splitlines()[-1].removeprefix("error: ")
        assert reason.startswith("sot-ethereum 2026-11-22: http://127.0.0.1:9/exports/ethereum/2026-11-22/META.json")
        [flow_run] = api_request(f"{root}/api", "POST", "/flow_runs/filter", {})
        assert flow_run["state"]["message"] == reason

        with browser_page(chromium, f"{root}/runs/flow-run/{flow_run['id']}?tab=Details") as page:
            page.wait_for_text("State Message")
            page.click(".p-text-truncate--action-text")  # "See More": the whole message
            details = page.wait_for_text(reason)
            assert "sot ethereum 2026-11-22" in details  # the run's name, not a random one
            assert "encountered an exception" not in details

            page.click("li#artifacts")
            artifacts = page.wait_for_text(f"failed: {reason}")  # the summary's card: its description
            assert "sot-ethereum-last-batch" in artifacts
