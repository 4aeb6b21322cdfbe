"""A small HTTP server on 127.0.0.1: export directories and replayed API responses.

The demo, the benchmark and the tests serve generated exports with it, so the httpx
path that users run against the real publisher is the one exercised. Tests can queue
failures for a path (e.g. one HTTP 500, then the file) and read the request log; the
demo replays recorded API responses on paths registered with :meth:`ExportServer.replay`.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

PREFIX = "/exports"


@dataclass(frozen=True)
class Reply:
    """A replayed HTTP response."""

    status: int
    content_type: str
    body: bytes


Responder = Callable[[dict[str, list[str]]], Reply]


class _Handler(SimpleHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def _route(self) -> bool:
        path, _, query = self.path.partition("?")
        with self.server.lock:
            self.server.requests.append(path)
            queued = self.server.faults.get(path)
            status = queued.popleft() if queued else None
            responder = self.server.replays.get(path)
        if status is None and responder is not None:
            reply = responder(parse_qs(query))
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            return False
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
    replays: dict[str, Responder]


class ExportServer:
    """Serve ``root`` at ``http://127.0.0.1:<port>/exports`` for the life of a ``with`` block."""

    def __init__(self, root: Path, port: int = 0) -> None:
        handler = partial(_Handler, directory=str(root))
        self._server = _Server(("127.0.0.1", port), handler)
        self._server.lock = threading.Lock()
        self._server.requests = []
        self._server.faults = defaultdict(deque)
        self._server.replays = {}
        self._thread = threading.Thread(target=self._server.serve_forever, name="export-server", daemon=True)

    @property
    def base_url(self) -> str:
        """The exports' base URL."""
        return f"{self.root_url}{PREFIX}"

    @property
    def requests(self) -> list[str]:
        """Paths requested so far, in order."""
        with self._server.lock:
            return list(self._server.requests)

    def fail(self, relative_path: str, *statuses: int) -> None:
        """Answer the next requests for ``relative_path`` with ``statuses`` (then serve normally)."""
        with self._server.lock:
            self._server.faults[f"{PREFIX}/{relative_path.lstrip('/')}"].extend(statuses)

    def fail_path(self, path: str, *statuses: int) -> None:
        """Answer the next requests for the absolute ``path`` (e.g. a replayed API path) with ``statuses``."""
        with self._server.lock:
            self._server.faults[path].extend(statuses)

    @property
    def replayed_paths(self) -> list[str]:
        """The paths answered by replays, in registration order."""
        with self._server.lock:
            return list(self._server.replays)

    def alter_replies(self, alter: Callable[[Reply], Reply]) -> None:
        """Pass every replayed reply through ``alter`` from now on (e.g. a truncated body, a 404)."""

        def altered(responder: Responder) -> Responder:
            return lambda query: alter(responder(query))

        with self._server.lock:
            for path, responder in self._server.replays.items():
                self._server.replays[path] = altered(responder)

    @property
    def root_url(self) -> str:
        """The server's root URL (replayed API paths hang off it)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def replay(self, path: str, responder: Responder) -> None:
        """Answer requests for ``path`` with ``responder(query)``."""
        with self._server.lock:
            self._server.replays[path] = responder

    def __enter__(self) -> ExportServer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
