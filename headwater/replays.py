"""Recorded API responses replayed on loopback for the demo (``fixtures/``, see its SOURCES.md).

Each source registers the paths its flow requests and the recorded body to answer
with; the demo then runs the real flows against ``ExportServer``'s root URL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headwater.export_server import ExportServer, Reply

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
JSON = "application/json;charset=utf-8"


@dataclass(frozen=True)
class DemoRun:
    """One API flow run of the demo: its instance name and how to start it against a root URL."""

    instance: str
    database: str
    table: str
    run: Callable[[str], Any]


def worldbank_pages(records: list[dict[str, Any]], meta: dict[str, Any]) -> Callable[[dict[str, list[str]]], Reply]:
    """Serve recorded records as ``[meta, records]`` pages of the requested ``per_page``.

    Only page 1 of the recorded query exists; its records are served as the whole result.
    """

    def respond(query: dict[str, list[str]]) -> Reply:
        per_page = int(query.get("per_page", ["50"])[0])
        page = int(query.get("page", ["1"])[0])
        pages = max(1, -(-len(records) // per_page))
        chunk = records[(page - 1) * per_page : page * per_page]
        body = [dict(meta, page=page, pages=pages, per_page=per_page, total=len(records)), chunk]
        return Reply(200, JSON, json.dumps(body).encode())

    return respond


def register_worldbank(server: ExportServer) -> DemoRun:
    """World Bank: the recorded GDP of Japan and the USA (page 1 of 3, 50 records)."""
    from flows.worldbank import ingest_worldbank  # noqa: PLC0415 - flows import this package's settings

    meta, records = json.loads((FIXTURES / "worldbank/indicator_JPN-USA_NY.GDP.MKTP.CD_page1of3.json").read_bytes())
    server.replay("/v2/country/JPN;USA/indicator/NY.GDP.MKTP.CD", worldbank_pages(records, meta))
    return DemoRun(
        instance="worldbank-business",
        database="worldbank",
        table="indicator_values",
        run=lambda root: ingest_worldbank(
            "business", countries=["JPN", "USA"], indicators=["NY.GDP.MKTP.CD"], base_url=root
        ),
    )


REGISTRARS: tuple[Callable[[ExportServer], DemoRun], ...] = (register_worldbank,)
