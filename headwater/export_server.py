"""A small static HTTP server for export directories, bound to 127.0.0.1.

The demo, the benchmark and the tests serve generated exports with it, so the httpx
path that users run against the real publisher is the one exercised. Tests can queue
failures for a path (e.g. one HTTP 500, then the file) and read the request log.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

PREFIX = "/exports"


class _Handler(SimpleHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def _route(self) -> bool:
        path = self.path.split("?", 1)[0]
        with self.server.lock:
            self.server.requests.append(path)
            queued = self.server.faults.get(path)
            status = queued.popleft() if queued else None
        if status is not None:
            self.send_response(status)
            if status in (429, 503):
                self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return False
        if not path.startswith(PREFIX + "/"):
            self.send_error(HTTPStatus.NOT_FOUND)
            return False
        self.path = path[len(PREFIX) :]
        return True

    def do_GET(self) -> None:
        if self._route():
            super().do_GET()

    def do_HEAD(self) -> None:
        if self._route():
            super().do_HEAD()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    lock: threading.Lock
    requests: list[str]
    faults: dict[str, deque[int]]


class ExportServer:
    """Serve ``root`` at ``http://127.0.0.1:<port>/exports`` for the life of a ``with`` block."""

    def __init__(self, root: Path, port: int = 0) -> None:
        handler = partial(_Handler, directory=str(root))
        self._server = _Server(("127.0.0.1", port), handler)
        self._server.lock = threading.Lock()
        self._server.requests = []
        self._server.faults = defaultdict(deque)
        self._thread = threading.Thread(target=self._server.serve_forever, name="export-server", daemon=True)

    @property
    def base_url(self) -> str:
        """The exports' base URL."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{PREFIX}"

    @property
    def requests(self) -> list[str]:
        """Paths requested so far, in order."""
        with self._server.lock:
            return list(self._server.requests)

    def fail(self, relative_path: str, *statuses: int) -> None:
        """Answer the next requests for ``relative_path`` with ``statuses`` (then serve normally)."""
        with self._server.lock:
            self._server.faults[f"{PREFIX}/{relative_path.lstrip('/')}"].extend(statuses)

    def __enter__(self) -> ExportServer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
