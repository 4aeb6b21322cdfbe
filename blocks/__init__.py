"""Prefect Blocks: where connection details and secrets live."""

from blocks.ledger import ledger_connector
from blocks.warehouse import ClickHouseWarehouse

__all__ = ["ClickHouseWarehouse", "ledger_connector"]
