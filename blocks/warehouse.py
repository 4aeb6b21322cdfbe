"""The ClickHouse warehouse as a Prefect Block.

Embedded chDB (``chdb:///abs/path``) by default, or a ClickHouse server or cluster
over HTTP(S) in production: the same clickhouse-connect client either way. chDB runs
one engine per process and one process per path, so embedded sessions take a file
lock beside the data directory: open late, close promptly, and runs in other threads
or processes wait their turn instead of failing.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from filelock import FileLock, Timeout
from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from headwater.errors import ConfigurationError
from headwater.logs import run_logger
from headwater.settings import Settings, get_settings

WAREHOUSE_WRITES = "headwater-warehouse-writes"
"""Global concurrency limit of loads into a ClickHouse server (created by ``python -m deployments.setup``)."""


class ClickHouseWarehouse(Block):
    """Where batches are loaded: embedded chDB or a ClickHouse server, via clickhouse-connect.

    Give either ``dsn`` (``chdb:///abs/path`` or ``https://host:8443/db``), or ``host``
    and friends. Put the password in ``password`` (a secret), never in the DSN.
    """

    _block_type_name = "ClickHouse Warehouse"
    _block_type_slug = "clickhouse-warehouse"
    _description = "Embedded chDB or a ClickHouse server/cluster reached through clickhouse-connect."

    dsn: str | None = Field(
        default=None,
        description="chdb:///abs/path for embedded chDB, or http(s)://host:port[/database].",
    )
    host: str | None = Field(default=None, description="ClickHouse server host (when no DSN).")
    port: int | None = Field(default=None, description="HTTP(S) port; 8123 plain, 8443 TLS by default.")
    username: str = Field(default="default", description="ClickHouse user.")
    password: SecretStr | None = Field(default=None, description="ClickHouse password.")
    database: str | None = Field(default=None, description="Default database of the session.")
    secure: bool = Field(default=False, description="Use HTTPS.")
    lock_timeout_s: float = Field(
        default=3600.0, description="Embedded only: how long to wait for another run's session."
    )

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> ClickHouseWarehouse:
        """The warehouse the settings name: a saved block, a URL, or chDB under the home dir."""
        settings = settings or get_settings()
        if settings.warehouse_block:
            return cls.load(settings.warehouse_block)  # type: ignore[return-value]
        dsn = settings.warehouse_url or f"chdb://{settings.home_dir / 'warehouse'}"
        return cls(dsn=dsn, lock_timeout_s=settings.warehouse_lock_timeout_s)

    @property
    def embedded(self) -> bool:
        """True for an in-process chDB warehouse."""
        return bool(self.dsn and self.dsn.startswith("chdb://"))

    def preload(self) -> None:
        """Embedded: load the engine's library in a background thread, so it overlaps the run's downloads.

        ``import chdb`` maps a few hundred megabytes of shared library (about 0.15 s);
        nothing else happens before the session takes the warehouse lock.
        """
        if self.embedded and "chdb" not in sys.modules:
            threading.Thread(target=_import_quietly, args=("chdb",), name="chdb-preload", daemon=True).start()

    @property
    def embedded_path(self) -> Path:
        """The chDB data directory (embedded only)."""
        if not self.embedded or not self.dsn:
            raise ConfigurationError("warehouse", "not an embedded chDB warehouse")
        path = urlparse(self.dsn).path
        if not path.startswith("/"):
            raise ConfigurationError("warehouse", f"expected chdb:///absolute/path, found {self.describe()}")
        return Path(path)

    def describe(self) -> str:
        """Where the warehouse is, without credentials (safe for logs and errors)."""
        if self.dsn:
            parsed = urlparse(self.dsn)
            netloc = parsed.hostname or ""
            if parsed.port:
                netloc += f":{parsed.port}"
            return f"{parsed.scheme}://{netloc}{parsed.path}"
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{self.host}:{self.port or (8443 if self.secure else 8123)}"

    def _connect(self) -> Client:
        password = self.password.get_secret_value() if self.password else ""
        if self.embedded:
            self.embedded_path.mkdir(parents=True, exist_ok=True)
            return clickhouse_connect.get_client(dsn=self.dsn, database=self.database)
        if self.dsn:
            return clickhouse_connect.get_client(dsn=self.dsn, password=password, database=self.database)
        if not self.host:
            raise ConfigurationError("warehouse", "expected a dsn or a host, found neither")
        return clickhouse_connect.get_client(
            host=self.host,
            port=self.port or 0,
            username=self.username,
            password=password,
            database=self.database or "__default__",
            secure=self.secure,
        )

    @contextmanager
    def session(self) -> Iterator[Client]:
        """A client for the duration of the ``with`` block, then closed.

        Embedded: holds the warehouse lock for that time, so sessions of concurrent
        runs (threads or processes) take turns on the one chDB engine path.
        """
        with self.sessions(1) as (client,):
            yield client

    @contextmanager
    def sessions(self, count: int) -> Iterator[list[Client]]:
        """``count`` clients for the ``with`` block (one run's parallel queries), then closed.

        Embedded: one warehouse lock for all of them; each client is its own handle on
        the process's one chDB engine, and queries on different handles run at once.
        """
        if count < 1:
            raise ValueError(f"expected at least one client, found {count}")
        if not self.embedded:
            with _closing_clients(self._connect, count) as clients:
                yield clients
            return
        path = self.embedded_path
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path) + ".lock", timeout=self.lock_timeout_s)
        waited = time.monotonic()
        try:
            lock.acquire()
        except Timeout as error:
            raise ConfigurationError(
                "warehouse",
                f"{self.describe()}: expected the embedded warehouse lock within "
                f"{self.lock_timeout_s:.0f}s, found it still held by another run",
            ) from error
        try:
            waited = time.monotonic() - waited
            if waited > 1:
                run_logger().info("waited %.1fs for the embedded warehouse lock", waited)
            with _closing_clients(self._connect, count) as clients:
                yield clients
        finally:
            lock.release()


def _import_quietly(module: str) -> None:
    """Import ``module`` ahead of time; a failure is left to the import that needs it, which reports it."""
    with suppress(ImportError):
        importlib.import_module(module)


@contextmanager
def _closing_clients(connect: Callable[[], Client], count: int) -> Iterator[list[Client]]:
    """``count`` clients from ``connect``, all closed on the way out (those opened, if one fails)."""
    with ExitStack() as stack:
        clients = []
        for _ in range(count):
            client = connect()
            stack.callback(client.close)
            clients.append(client)
        yield clients
