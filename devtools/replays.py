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

from devtools.export_server import ExportServer, Reply

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
JSON = "application/json;charset=utf-8"


@dataclass(frozen=True)
class DemoRun:
    """One API flow run of the demo: its instance name and how to start it against a root URL."""

    instance: str
    database: str
    tables: tuple[str, ...]
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
        tables=("indicator_values",),
        run=lambda root: ingest_worldbank(
            "business", countries=["JPN", "USA"], indicators=["NY.GDP.MKTP.CD"], base_url=root
        ),
    )


def recorded(relative: str, content_type: str) -> Callable[[dict[str, list[str]]], Reply]:
    """Answer every request with one recorded body."""
    body = (FIXTURES / relative).read_bytes()
    return lambda _query: Reply(200, content_type, body)


def register_faostat(server: ExportServer) -> DemoRun:
    """FAOSTAT: the recorded QCL CSV for India (area harvested and yield, first 50 rows)."""
    from flows.faostat import ingest_faostat  # noqa: PLC0415

    server.replay(
        "/en/data/QCL", recorded("faostat/FAOSTAT_data_QCL_India_areaharvested_yield_first50.csv", "text/csv")
    )
    return DemoRun(
        instance="faostat-qcl-100",
        database="faostat",
        tables=("production",),
        run=lambda root: ingest_faostat("100", elements=["2312", "2413"], base_url=root),
    )


def register_ilostat(server: ExportServer) -> DemoRun:
    """ILOSTAT: the recorded rplumber CSV of UNE_DEAP_SEX_AGE_RT_A for KEN, USA and X01."""
    from flows.ilostat import ingest_ilostat  # noqa: PLC0415

    server.replay(
        "/data/indicator/",
        recorded("ilostat/rplumber_indicator_UNE_DEAP_SEX_AGE_RT_A_type-code.csv", "application/octet-stream"),
    )
    return DemoRun(
        instance="ilostat-une-deap-sex-age-rt-a",
        database="ilostat",
        tables=("indicator_values",),
        run=lambda root: ingest_ilostat("UNE_DEAP_SEX_AGE_RT_A", ref_areas=["KEN", "USA", "X01"], base_url=root),
    )


def register_osm(server: ExportServer) -> DemoRun:
    """OpenStreetMap: recorded Overpass answers (cafés for amenities, a way, a relation)."""
    from flows.osm import ingest_osm  # noqa: PLC0415

    bodies = {
        '["amenity"]': (FIXTURES / "overpass/overpass-wrapper_example_singlenode_cafes.json").read_bytes(),
        '["building"]': (FIXTURES / "overpass/overpy_way-03.json").read_bytes(),
        '["landuse"]': (FIXTURES / "overpass/overpy_relation-03.json").read_bytes(),
    }

    def respond(query: dict[str, list[str]]) -> Reply:
        data = query.get("data", [""])[0]
        body = next((b for tag, b in bodies.items() if tag in data), None)
        return Reply(200, JSON, body) if body else Reply(400, "text/plain", b"unexpected query")

    server.replay("/api/interpreter", respond)
    return DemoRun(
        instance="osm-bj",
        database="osm",
        tables=("buildings", "landuse", "amenities"),
        run=lambda root: ingest_osm("BJ", base_url=f"{root}/api/interpreter"),
    )


def register_open_meteo(server: ExportServer) -> DemoRun:
    """Open-Meteo: the recorded Greenwich forecast (current conditions, 48 hours), as region set ``greenwich``."""
    from flows.open_meteo import ingest_open_meteo  # noqa: PLC0415

    forecast = "open_meteo/forecast_current_minutely15_hourly_daily_greenwich_2026-09-17.json"
    server.replay("/v1/forecast", recorded(forecast, JSON))
    return DemoRun(
        instance="open-meteo-greenwich",
        database="weather",
        tables=("weather_current", "weather_hourly"),
        run=lambda root: ingest_open_meteo(
            "greenwich", regions=[{"name": "Greenwich", "latitude": 51.4769, "longitude": -0.0005}], base_url=root
        ),
    )


def register_openaq(server: ExportServer) -> DemoRun:
    """OpenAQ: location 1 (one PM2.5 sensor) and 48 recorded measurements (no API key in the demo)."""
    from flows.openaq import ingest_openaq  # noqa: PLC0415

    server.replay("/v3/locations/1", recorded("openaq/openaq-r_v3_locations_1.json", JSON))
    server.replay(
        "/v3/sensors/1/measurements", recorded("openaq/openaq-r_v3_sensors_3_measurements_2023-03-07.json", JSON)
    )
    return DemoRun(
        instance="openaq-demo",
        database="openaq",
        tables=("measurements", "measurements_quarantine"),
        run=lambda root: ingest_openaq([1], location_set="demo", base_url=root),
    )


def register_fx(server: ExportServer) -> DemoRun:
    """FX: the recorded ECB daily XML (ECB wins); Frankfurter's recorded answer to compare with."""
    from flows.fx import ingest_fx  # noqa: PLC0415

    server.replay("/stats/eurofxref/eurofxref-daily.xml", recorded("ecb/eurofxref-daily_2025-05-09.xml", "text/xml"))
    server.replay("/v1/latest", recorded("frankfurter/v1_latest_amount1_baseEUR_2025-12-17.json", JSON))
    return DemoRun(
        instance="fx-rates",
        database="markets",
        tables=("rates",),
        run=lambda root: ingest_fx("EUR", ecb_url=root, frankfurter_url=root, erapi_url=root),
    )


def register_coffee(server: ExportServer) -> DemoRun:
    """Coffee: the recorded GC=F chart body stands in for KC=F (same shape; no KC=F recording exists)."""
    from flows.coffee import ingest_coffee  # noqa: PLC0415

    server.replay(
        "/v8/finance/chart/KC=F",
        recorded("stooq_yahoo/v8_finance_chart_GC_F_period1-1577836800_period2-1578009600_body.json", JSON),
    )
    return DemoRun(
        instance="coffee-prices",
        database="markets",
        tables=("coffee_prices",),
        run=lambda root: ingest_coffee("KC", yahoo_url=root, stooq_url=root),
    )


REGISTRARS: tuple[Callable[[ExportServer], DemoRun], ...] = (
    register_worldbank,
    register_faostat,
    register_ilostat,
    register_osm,
    register_open_meteo,
    register_openaq,
    register_fx,
    register_coffee,
)
