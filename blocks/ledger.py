"""The metadata ledger's connection: prefect-sqlalchemy's ``SqlAlchemyConnector`` block.

SQLite at ``<home>/ledger.db`` by default; in production save a connector block for
PostgreSQL (its password is a secret inside the block) and name it in
``HEADWATER_LEDGER_BLOCK``, or give ``HEADWATER_LEDGER_URL``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from filelock import FileLock
from prefect_sqlalchemy import SqlAlchemyConnector
from sqlalchemy.engine import Engine

from headwater.ledger import Ledger
from headwater.settings import Settings, get_settings

MIGRATION_LOCK_KEY = 0x48454144  # PostgreSQL advisory lock id of ledger migrations ("HEAD")


def ledger_connector(settings: Settings | None = None) -> SqlAlchemyConnector:
    """The ledger's connector: a saved block, a URL, or SQLite under the home dir."""
    settings = settings or get_settings()
    if settings.ledger_block:
        return SqlAlchemyConnector.load(settings.ledger_block)  # type: ignore[return-value]
    if settings.ledger_url:
        return SqlAlchemyConnector(connection_info=settings.ledger_url)
    path = settings.home_dir / "ledger.db"
    return SqlAlchemyConnector(connection_info=f"sqlite:///{path}", connect_args={"timeout": 60})


class _ConnectorChatter(logging.Filter):
    """Drops the connector's engine lifecycle messages ("Created a new engine." and the like)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "prefect_sqlalchemy" not in record.pathname or record.levelno >= logging.WARNING


_CHATTER = _ConnectorChatter()


def quiet_connector_logs() -> None:
    """Keep the connector's engine chatter out of the terminal and the run logs (warnings still pass); idempotent."""
    for name in ("prefect.flow_runs", "prefect.task_runs", "SqlAlchemyConnector", "prefect.SqlAlchemyConnector"):
        logger = logging.getLogger(name)
        if _CHATTER not in logger.filters:
            logger.addFilter(_CHATTER)


_LEDGERS: dict[str, Ledger] = {}
_LEDGERS_LOCK = threading.Lock()


def _ledger_key(settings: Settings) -> str:
    return settings.ledger_block or settings.ledger_url or str(settings.home_dir / "ledger.db")


def get_ledger(settings: Settings | None = None) -> Ledger:
    """The process's ledger for these settings: connected and migrated once, then reused."""
    settings = settings or get_settings()
    key = _ledger_key(settings)
    with _LEDGERS_LOCK:
        ledger = _LEDGERS.get(key)
        if ledger is None:
            quiet_connector_logs()
            engine = ledger_connector(settings).get_engine()
            if engine.url.get_backend_name() == "sqlite" and engine.url.database not in (None, "", ":memory:"):
                Path(str(engine.url.database)).parent.mkdir(parents=True, exist_ok=True)
            ledger = Ledger(engine)
            with _migration_lock(engine):
                ledger.migrate()
            _LEDGERS[key] = ledger
    return ledger


@contextmanager
def open_ledger(settings: Settings | None = None) -> Iterator[Ledger]:
    """The process's migrated ledger for the duration of the ``with`` block (the engine stays open)."""
    yield get_ledger(settings)


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Serialise schema creation and migration across processes starting on a fresh ledger.

    SQLite: a file lock beside the database file. PostgreSQL: a session advisory lock.
    """
    backend = engine.url.get_backend_name()
    if backend == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        with FileLock(str(engine.url.database) + ".migrate.lock", timeout=120):
            yield
        return
    if backend == "postgresql":
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        return
    yield
