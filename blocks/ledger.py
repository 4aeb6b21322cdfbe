"""The metadata ledger's connection: prefect-sqlalchemy's ``SqlAlchemyConnector`` block.

SQLite at ``<home>/ledger.db`` by default; in production save a connector block for
PostgreSQL (its password is a secret inside the block) and name it in
``HEADWATER_LEDGER_BLOCK``, or give ``HEADWATER_LEDGER_URL``.
"""

from __future__ import annotations

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
