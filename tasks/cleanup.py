"""Cleanup step: always runs, on success and on failure (a plain call: nothing to retry)."""

from __future__ import annotations

import shutil
from pathlib import Path

from blocks.warehouse import ClickHouseWarehouse
from headwater.batch import BatchRequest
from headwater.loading import drop_run_tables
from headwater.logs import run_logger


def cleanup_run(request: BatchRequest, workdir: Path, warehouse: ClickHouseWarehouse | None) -> None:
    """Remove the run's temp dir and any staging or backup table it left behind."""
    shutil.rmtree(workdir, ignore_errors=True)
    if warehouse is not None:
        with warehouse.session() as client:
            dropped = drop_run_tables(client, request.database, request.tag)
        if dropped:
            run_logger().warning("dropped leftover tables %s", ", ".join(dropped))
