"""Meta-tests: flows, deployments and blocks stay consistent with each other."""

from __future__ import annotations

import ast
import importlib
from datetime import date
from pathlib import Path

import pytest
import yaml
from croniter import croniter
from prefect import Flow
from prefect_sqlalchemy import SqlAlchemyConnector
from pydantic import SecretStr

from blocks.warehouse import ClickHouseWarehouse
from devtools.export_server import ExportServer
from devtools.generate import write_export
from flows.sot import ingest_sot
from headwater.settings import get_settings
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
    entrypoints = {d["entrypoint"] for d in DEPLOYMENTS}
    flows = _flows_in_repo()
    assert flows
    for entrypoint, flow in flows.items():
        assert flow.fn.__doc__, f"{entrypoint} has no docstring"
        assert entrypoint in entrypoints, f"{entrypoint} has no deployment in prefect.yaml"


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
    for folder in ("headwater", "flows", "tasks", "blocks", "deployments"):
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


PROJECT_PACKAGES = ("headwater", "blocks", "tasks", "flows", "deployments", "devtools")
MAY_IMPORT = {
    "headwater": {"headwater"},
    "blocks": {"headwater", "blocks"},
    "tasks": {"headwater", "blocks", "tasks"},
    "flows": {"headwater", "blocks", "tasks", "flows"},
    "deployments": {"headwater", "blocks", "deployments"},
    "devtools": set(PROJECT_PACKAGES),
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
    """flows → tasks → blocks → headwater; deployments → blocks → headwater; devtools may use all."""
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
