"""The metadata ledger's connection: prefect-sqlalchemy's ``SqlAlchemyConnector`` block.

SQLite at ``<home>/ledger.db`` by default; in production save a connector block for
PostgreSQL (its password is a secret inside the block) and name it in
``HEADWATER_LEDGER_BLOCK``, or give ``HEADWATER_LEDGER_URL``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from prefect_sqlalchemy import SqlAlchemyConnector

from headwater.settings import Settings, get_settings


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


@contextmanager
def quiet_connector_logs() -> Iterator[None]:
    """Keep the connector's engine chatter out of the terminal and the run logs (warnings still pass)."""
    for name in ("prefect.flow_runs", "prefect.task_runs", "SqlAlchemyConnector"):
        logger = logging.getLogger(name)
        if _CHATTER not in logger.filters:
            logger.addFilter(_CHATTER)
    yield
