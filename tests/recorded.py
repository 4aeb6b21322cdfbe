"""Recorded API responses (``fixtures/``, see its SOURCES.md), served by a real local HTTP server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.prefect_server import REPO

FIXTURES = REPO / "fixtures"


def fixture_path(relative: str) -> Path:
    """A recorded response file."""
    path = FIXTURES / relative
    if not path.is_file():
        raise FileNotFoundError(f"recorded response {path} not found")
    return path


def fixture_bytes(relative: str) -> bytes:
    """A recorded response body, byte for byte."""
    return fixture_path(relative).read_bytes()


def fixture_json(relative: str) -> Any:
    """A recorded JSON response, parsed."""
    return json.loads(fixture_bytes(relative))
