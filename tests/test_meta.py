"""Meta-tests: flows, deployments and blocks stay consistent with each other."""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from croniter import croniter
from prefect import Flow
from prefect_sqlalchemy import SqlAlchemyConnector
from pydantic import SecretStr

from blocks.warehouse import ClickHouseWarehouse
from deployments.catalog import CLEANUP_ENTRYPOINT, WATCH_ENTRYPOINT
from deployments.catalog import ENTRYPOINT as CATALOG_ENTRYPOINT
from deployments.setup import POOLS, PoolSpec, describe_queues
from devtools.export_server import ExportServer
from devtools.generate import write_export
from flows.sot import ingest_sot
from headwater.errors import ConfigurationError
from headwater.http import host_rate
from headwater.settings import Settings, get_settings
from headwater.sources import DECLARED
from headwater.sources.sot.contract import SOT
from headwater.sources.worldbank import WORLDBANK
from headwater.spec import DeclaredSource, check_params
from tests.helpers import ledger_runs, manifest_rows
from tests.prefect_server import REPO

DEPLOYMENTS = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]


def _flows_in_repo() -> dict[str, Flow]:  # type: ignore[type-arg]
    found = {}
    for path in sorted((REPO / "flows").glob("*.py")):
        module = importlib.import_module(f"flows.{path.stem}")
        for name, value in vars(module).items():
            if isinstance(value, Flow) and value.__module__ == module.__name__:
                found[f"flows/{path.name}:{name}"] = value
    return found


def test_every_flow_has_a_docstring_and_a_deployment() -> None:
    by_code = {CATALOG_ENTRYPOINT, WATCH_ENTRYPOINT, CLEANUP_ENTRYPOINT}  # python -m deployments.catalog
    entrypoints = {d["entrypoint"] for d in DEPLOYMENTS} | by_code
    flows = _flows_in_repo()
    assert flows
    for entrypoint, flow in flows.items():
        assert flow.fn.__doc__, f"{entrypoint} has no docstring"
        assert entrypoint in entrypoints, f"{entrypoint} has no deployment in prefect.yaml"


def test_every_flow_has_a_run_name_template() -> None:
    """No run is named at random ("amazing-capuchin"): every flow names its runs, from its parameters."""
    flows = _flows_in_repo()
    assert len(flows) >= 10
    unnamed = sorted(e for e, f in flows.items() if not f.flow_run_name)
    assert unnamed == [], f"flows without a flow_run_name: {unnamed}"
    for entrypoint, flow in flows.items():
        if isinstance(flow.flow_run_name, str):
            fields = set(re.findall(r"{(\w+)", flow.flow_run_name))
            assert fields <= set(flow.parameters.properties), f"{entrypoint}: {flow.flow_run_name!r} names no parameter"


def test_every_deployment_entrypoint_imports_a_flow() -> None:
    names = [d["name"] for d in DEPLOYMENTS]
    assert len(names) == len(set(names))
    for deployment in DEPLOYMENTS:
        path, attribute = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert isinstance(getattr(module, attribute), Flow)


def test_every_schedule_parses_and_has_a_stable_slug() -> None:
    slugs = []
    for deployment in DEPLOYMENTS:
        assert deployment.get("schedules"), f"{deployment['name']} has no schedule"
        for schedule in deployment["schedules"]:
            assert croniter.is_valid(schedule["cron"]), f"{deployment['name']}: bad cron {schedule['cron']!r}"
            assert schedule["timezone"] == "UTC"
            assert schedule["slug"].startswith(deployment["name"])
            slugs.append(schedule["slug"])
        assert deployment["work_pool"]["name"] == "headwater"
        assert deployment.get("concurrency_limit") == 1
    assert len(slugs) == len(set(slugs))


def test_no_module_reads_the_environment_outside_settings() -> None:
    offenders = []
    for folder in ("headwater", "flows", "tasks", "blocks", "deployments", "commands"):
        for path in (REPO / folder).rglob("*.py"):
            if path.name == "settings.py":
                continue
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


@pytest.mark.parametrize("block", [ClickHouseWarehouse])
def test_block_fields_are_described(block: type[ClickHouseWarehouse]) -> None:
    schema = block.model_json_schema()
    for name, field in schema["properties"].items():
        assert field.get("description"), f"{block.__name__}.{name} has no description"
    assert block.__doc__


def test_saved_blocks_drive_the_flow(
    home: Path, exports: Path, server: ExportServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HEADWATER_WAREHOUSE_BLOCK and HEADWATER_LEDGER_BLOCK name saved blocks the flow then uses."""
    warehouse_dir = tmp_path / "elsewhere" / "warehouse"
    ClickHouseWarehouse(dsn=f"chdb://{warehouse_dir}", password=SecretStr("not-used-by-chdb")).save(
        "test-warehouse", overwrite=True
    )
    ledger_file = tmp_path / "elsewhere" / "ledger.db"
    SqlAlchemyConnector(connection_info=f"sqlite:///{ledger_file}").save("test-ledger", overwrite=True)
    monkeypatch.setenv("HEADWATER_WAREHOUSE_BLOCK", "test-warehouse")
    monkeypatch.setenv("HEADWATER_LEDGER_BLOCK", "test-ledger")
    get_settings.cache_clear()

    loaded = ClickHouseWarehouse.load("test-warehouse")
    assert loaded.password is not None
    assert loaded.password.get_secret_value() == "not-used-by-chdb"
    export = write_export(exports, "ethereum", date(2026, 11, 22), 40)
    ingest_sot("ethereum", date(2026, 11, 22), base_url=server.base_url)

    assert warehouse_dir.is_dir()
    assert not (home / "warehouse").exists()
    assert ledger_file.is_file()
    assert not (home / "ledger.db").exists()
    assert [r["status"] for r in ledger_runs("sot-ethereum")] == ["loaded"]
    with ClickHouseWarehouse.from_settings().session() as client:
        assert client.command("SELECT count() FROM sot.raw_alerts") == manifest_rows(export)["raw_alerts"]


PROJECT_PACKAGES = ("headwater", "blocks", "tasks", "flows", "deployments", "devtools", "commands")
MAY_IMPORT = {
    "headwater": {"headwater"},
    "blocks": {"headwater", "blocks"},
    "tasks": {"headwater", "blocks", "tasks"},
    "flows": {"headwater", "blocks", "tasks", "flows"},
    "deployments": {"headwater", "blocks", "deployments"},
    "devtools": set(PROJECT_PACKAGES),
    "commands": set(PROJECT_PACKAGES),
}


def upward_imports(package: str, source: str) -> list[str]:
    """Project packages ``source`` (a module of ``package``) imports against the layer order."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module]
            if isinstance(node, ast.ImportFrom) and node.module and not node.level
            else []
        )
        for name in names:
            top = name.split(".")[0]
            if top in PROJECT_PACKAGES and top not in MAY_IMPORT[package]:
                found.append(name)
    return found


def test_layers_import_one_way() -> None:
    """flows → tasks → blocks → headwater; deployments → blocks → headwater; devtools and commands may use all."""
    violations = {
        str(path.relative_to(REPO)): bad
        for package in PROJECT_PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        if (bad := upward_imports(package, path.read_text()))
    }
    assert violations == {}


def test_the_layer_check_catches_an_upward_import() -> None:
    assert upward_imports("headwater", "def f():\n    from tasks.load import load_batch\n") == ["tasks.load"]
    assert upward_imports("tasks", "import flows.sot\nfrom headwater import events\n") == ["flows.sot"]
    assert upward_imports("flows", "from tasks.pipeline import run_batch\n") == []


def declaration_problems(
    deployments: list[dict[str, Any]],
    sources: tuple[DeclaredSource[Any], ...] = DECLARED,
    pools: tuple[PoolSpec, ...] = POOLS,
) -> list[str]:
    """What breaks the hidden rules between declarations, ``prefect.yaml`` and the queues.

    A source deployment's runs must record the deployment's name as their instance (health
    and freshness join the two), every deployment's queue must exist, and every declared
    source must have a deployment.
    """
    problems = []
    queues = {(pool.name, queue.name) for pool in pools for queue in pool.queues}
    by_module = {source.name: source for source in sources}
    deployed = set()
    for deployment in deployments:
        name, pool = deployment["name"], deployment["work_pool"]
        if (pool["name"], pool.get("work_queue_name")) not in queues:
            problems.append(f"{name}: queue {pool.get('work_queue_name')!r} is not in deployments/setup.py")
        module = Path(deployment["entrypoint"].split(":")[0]).stem
        parameters = deployment.get("parameters") or {}
        if module == "filedrop":
            instance = parameters.get("source")
        elif module in by_module:
            source = by_module[module]
            deployed.add(source.name)
            try:
                instance = source.instance_of(check_params(source, parameters))
            except ConfigurationError as error:
                problems.append(f"{name}: {error}")
                continue
        else:
            continue
        if instance != name:
            problems.append(f"{name}: its runs record instance {instance!r}, not the deployment's name")
    problems += [f"{s.name}: no deployment in prefect.yaml" for s in sources if s.name not in deployed]
    return problems


def test_every_deployment_runs_the_instance_it_is_named_after_on_a_known_queue() -> None:
    assert declaration_problems(DEPLOYMENTS) == []


def test_the_declaration_check_catches_a_broken_declaration() -> None:
    broken = replace(WORLDBANK, instance="wb-{vertical}")
    deployments = [dict(d) for d in DEPLOYMENTS if not d["entrypoint"].startswith("flows/osm.py")]
    deployments[0] = {**deployments[0], "work_pool": {"name": "headwater", "work_queue_name": "nowhere"}}
    sources = tuple(broken if s is WORLDBANK else s for s in DECLARED)
    problems = declaration_problems(deployments, sources)
    assert f"{deployments[0]['name']}: queue 'nowhere' is not in deployments/setup.py" in problems
    assert "worldbank-agriculture: its runs record instance 'wb-agriculture', not the deployment's name" in problems
    assert "osm: no deployment in prefect.yaml" in problems


def test_queue_descriptions_are_derived_from_the_deployments() -> None:
    assert all(not queue.description for pool in POOLS for queue in pool.queues), "written by hand in setup.py"
    described = {q.name: q.description for pool in describe_queues(POOLS, DEPLOYMENTS) for q in pool.queues}
    assert described["agriculture"].startswith("Runs World Bank, FAOSTAT, Open-Meteo")
    assert "OpenAQ" in described["environment"]
    assert all(text.startswith("Runs ") for text in described.values()), described


def test_every_declared_source_has_a_database_urls_and_described_parameters() -> None:
    settings = get_settings()
    for source in DECLARED:
        assert source.database_in(settings) == source.database, source.name
        assert source.title, source.name
        assert source.summary, source.name
        assert source.params.__doc__, source.name
        for url in source.urls:
            assert url.param in source.params.model_fields, f"{source.name}: {url.param} is not a parameter"
            assert url.default or source is SOT, f"{source.name}: {url.param} has no public default"
        for name, field in source.params.model_fields.items():
            assert field.description, f"{source.name}: parameter {name} has no description"
        assert set(source.partition_columns) <= {n for n in dir(source.params) if not n.startswith("_")} | set(
            source.params.model_fields
        ), f"{source.name}: a partition column is neither parameter nor property"


def test_per_source_settings_are_maps_keyed_by_source(configure: Callable[..., None]) -> None:
    configure(base_urls='{"worldbank": "http://127.0.0.1:1/wb"}', sot_base_url="file:///srv/exports")
    settings = get_settings()
    assert settings.base_urls == {"worldbank": "http://127.0.0.1:1/wb", "sot": "file:///srv/exports"}
    assert not any(name.endswith(("_base_url", "_database")) for name in Settings.model_fields)
    assert host_rate("https://overpass-api.de/api/interpreter") == 0.5  # declared by OSM
    configure(http_rate_limits='{"overpass-api.de": 0.1}')
    assert host_rate("https://overpass-api.de/api/interpreter") == 0.1  # the setting overrides it


README_FLAG = re.compile(r"(?<![\w/])(?:python -m )?flows\.(\w+)((?:\s+\[?--[\w-]+[^`|\n]*)*)")


def _flags_in_docs() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))):
        for module, rest in README_FLAG.findall(path.read_text()):
            found.setdefault(module, set()).update(re.findall(r"--[a-z][\w-]*", rest))
    return found


def test_every_flag_the_docs_show_exists(capsys: pytest.CaptureFixture[str]) -> None:
    shown = _flags_in_docs()
    assert shown["sot"] >= {"--network", "--date", "--base-url"}
    for module, flags in shown.items():
        main = importlib.import_module(f"flows.{module}").main
        with pytest.raises(SystemExit):
            main(["--help"])
        help_text = capsys.readouterr().out
        missing = sorted(f for f in flags if f not in help_text)
        assert missing == [], f"python -m flows.{module} has no {missing}"
