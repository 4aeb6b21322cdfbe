"""Recorded API responses replayed on loopback (``fixtures/``, see its SOURCES.md): the demo's and the tests' table.

Each source registers the paths its flow requests and the recorded body to answer
with, and says with which parameters its flow runs against the server's root URL. The
demo runs every entry; the standard source suite (``tests/test_sources.py``) runs every
entry through the behaviours every source shares, with the same parameters on the
flow and on its command line.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.export_server import ExportServer, Reply
from headwater.settings import get_settings
from headwater.sources.coffee import COFFEE
from headwater.sources.faostat import FAOSTAT
from headwater.sources.fx import FX
from headwater.sources.ilostat import ILOSTAT
from headwater.sources.open_meteo import OPEN_METEO
from headwater.sources.openaq import OPENAQ
from headwater.sources.osm import OSM
from headwater.sources.worldbank import WORLDBANK
from headwater.spec import ApiSource, check_params

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
JSON = "application/json;charset=utf-8"


@dataclass(frozen=True)
class DemoRun:
    """One recorded run of an API source: the source and its flow's parameters against a root URL.

    ``fallback`` marks a source that still loads when every provider fails (coffee's
    dated static price), so a failing upstream does not fail its run.
    """

    source: ApiSource[Any]
    params: Callable[[str], dict[str, Any]]
    fallback: bool = False

    @property
    def instance(self) -> str:
        """The instance its runs record."""
        return self.source.instance_of(check_params(self.source, self.params("http://127.0.0.1")))

    @property
    def database(self) -> str:
        """The ClickHouse database it loads into."""
        return self.source.database_in(get_settings())

    @property
    def tables(self) -> tuple[str, ...]:
        """The tables its runs load."""
        excluded = check_params(self.source, self.params("http://127.0.0.1")).excluded_tables
        return tuple(t for t in self.source.tables if t not in excluded)

    def run(self, root: str) -> Any:
        """Run the source's flow against ``root``."""
        return self.flow()(**self.params(root))

    def flow_module(self) -> Any:
        """The source's flow module (``flows.<name>``: its flow and its ``main``)."""
        return importlib.import_module(f"flows.{self.source.name}")

    def flow(self) -> Any:
        """The source's Prefect flow (``flows.<name>.ingest_<name>``)."""
        return getattr(self.flow_module(), self.source.flow_name.replace("-", "_"))

    def argv(self, root: str) -> list[str]:
        """The same run as ``python -m flows.<name>`` arguments."""
        from headwater.cli import flag_of  # noqa: PLC0415 - only the command line needs it

        fields = self.source.params.model_fields
        args: list[str] = []
        for name, value in self.params(root).items():
            flag = flag_of(name, fields[name])
            if value is True:
                args.append(flag)
            elif isinstance(value, list) and all(isinstance(v, str | int) for v in value):
                args += [flag, ",".join(str(v) for v in value)]
            elif isinstance(value, list):
                args += [flag, json.dumps(value)]
            else:
                args += [flag, str(value)]
        return args


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
    meta, records = json.loads((FIXTURES / "worldbank/indicator_JPN-USA_NY.GDP.MKTP.CD_page1of3.json").read_bytes())
    server.replay("/v2/country/JPN;USA/indicator/NY.GDP.MKTP.CD", worldbank_pages(records, meta))
    return DemoRun(
        WORLDBANK,
        lambda root: {
            "vertical": "business",
            "countries": ["JPN", "USA"],
            "indicators": ["NY.GDP.MKTP.CD"],
            "base_url": root,
        },
    )


def recorded(relative: str, content_type: str) -> Callable[[dict[str, list[str]]], Reply]:
    """Answer every request with one recorded body."""
    body = (FIXTURES / relative).read_bytes()
    return lambda _query: Reply(200, content_type, body)


def register_faostat(server: ExportServer) -> DemoRun:
    """FAOSTAT: the recorded QCL CSV for India (area harvested and yield, first 50 rows)."""
    server.replay(
        "/en/data/QCL", recorded("faostat/FAOSTAT_data_QCL_India_areaharvested_yield_first50.csv", "text/csv")
    )
    return DemoRun(FAOSTAT, lambda root: {"area": "100", "elements": ["2312", "2413"], "base_url": root})


def register_ilostat(server: ExportServer) -> DemoRun:
    """ILOSTAT: the recorded rplumber CSV of UNE_DEAP_SEX_AGE_RT_A for KEN, USA and X01."""
    server.replay(
        "/data/indicator/",
        recorded("ilostat/rplumber_indicator_UNE_DEAP_SEX_AGE_RT_A_type-code.csv", "application/octet-stream"),
    )
    return DemoRun(
        ILOSTAT,
        lambda root: {"indicator": "UNE_DEAP_SEX_AGE_RT_A", "ref_areas": ["KEN", "USA", "X01"], "base_url": root},
    )


def register_osm(server: ExportServer) -> DemoRun:
    """OpenStreetMap: recorded Overpass answers (cafés for amenities, a way, a relation)."""
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
    return DemoRun(OSM, lambda root: {"area": "BJ", "base_url": f"{root}/api/interpreter"})


def register_open_meteo(server: ExportServer) -> DemoRun:
    """Open-Meteo: the recorded Greenwich forecast (current conditions, 48 hours), as region set ``greenwich``."""
    forecast = "open_meteo/forecast_current_minutely15_hourly_daily_greenwich_2026-09-17.json"
    server.replay("/v1/forecast", recorded(forecast, JSON))
    return DemoRun(
        OPEN_METEO,
        lambda root: {
            "region_set": "greenwich",
            "regions": [{"name": "Greenwich", "latitude": 51.4769, "longitude": -0.0005}],
            "base_url": root,
        },
    )


def register_openaq(server: ExportServer) -> DemoRun:
    """OpenAQ: location 1 (one PM2.5 sensor) and 48 recorded measurements (no API key in the demo)."""
    server.replay("/v3/locations/1", recorded("openaq/openaq-r_v3_locations_1.json", JSON))
    server.replay(
        "/v3/sensors/1/measurements", recorded("openaq/openaq-r_v3_sensors_3_measurements_2023-03-07.json", JSON)
    )
    return DemoRun(OPENAQ, lambda root: {"locations": [1], "location_set": "demo", "base_url": root})


def register_fx(server: ExportServer) -> DemoRun:
    """FX: the recorded ECB daily XML (ECB wins); Frankfurter's recorded answer to compare with."""
    server.replay("/stats/eurofxref/eurofxref-daily.xml", recorded("ecb/eurofxref-daily_2025-05-09.xml", "text/xml"))
    server.replay("/v1/latest", recorded("frankfurter/v1_latest_amount1_baseEUR_2025-12-17.json", JSON))
    return DemoRun(FX, lambda root: {"base": "EUR", "ecb_url": root, "frankfurter_url": root, "erapi_url": root})


def register_coffee(server: ExportServer) -> DemoRun:
    """Coffee: the recorded GC=F chart body stands in for KC=F (same shape; no KC=F recording exists)."""
    server.replay(
        "/v8/finance/chart/KC=F",
        recorded("stooq_yahoo/v8_finance_chart_GC_F_period1-1577836800_period2-1578009600_body.json", JSON),
    )
    return DemoRun(COFFEE, lambda root: {"symbol": "KC", "yahoo_url": root, "stooq_url": root}, fallback=True)


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
