"""Logger lookup: Prefect's run logger inside a flow or task run, a plain logger outside."""

from __future__ import annotations

import logging
from typing import Any

from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger


def run_logger() -> logging.Logger | logging.LoggerAdapter[Any]:
    """The current run's logger, so messages reach the Prefect UI; ``headwater`` otherwise."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("headwater")
