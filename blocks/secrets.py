"""Secrets of sources (API keys) from Prefect Secret blocks; never from settings or parameters."""

from __future__ import annotations

from prefect.blocks.system import Secret

from headwater.logs import run_logger


def secret_value(block: str) -> str | None:
    """The value of the Secret block named ``block``, or None (with a warning) when there is none."""
    try:
        value = Secret.load(block).get()  # type: ignore[union-attr]
    except ValueError:
        run_logger().warning("no Secret block %r: requests go without an API key", block)
        return None
    return str(value)
