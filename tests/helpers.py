"""Test helpers that read real outcomes: warehouse rows, ledger rows, files on disk."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from blocks.ledger import open_ledger
from blocks.warehouse import ClickHouseWarehouse
from headwater.manifest import build_manifest, write_manifest
from headwater.settings import get_settings

INGESTED = ("raw_alerts", "raw_features", "raw_clusters", "raw_address_labels")


def query(sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    """Rows of a query on the configured warehouse."""
    with ClickHouseWarehouse.from_settings().session() as client:
        return [tuple(r) for r in client.query(sql, parameters=parameters).result_rows]


def tables(database: str = "sot") -> set[str]:
    """Table names in ``database``."""
    return {r[0] for r in query("SELECT name FROM system.tables WHERE database = {d:String}", {"d": database})}


def rows_for(table: str, network: str, day: str) -> int:
    """Rows of one export in a target table (0 when the table does not exist)."""
    if table not in tables():
        return 0
    return int(
        query(
            f"SELECT count() FROM sot.{table} WHERE network = {{n:String}} AND processing_date = {{d:Date}}",
            {"n": network, "d": day},
        )[0][0]
    )


def batch_ids(table: str, network: str, day: str) -> set[str]:
    """Distinct lineage batch ids of one export in a target table."""
    return {
        r[0]
        for r in query(
            f"SELECT DISTINCT _batch_id FROM sot.{table} WHERE network = {{n:String}} AND processing_date = {{d:Date}}",
            {"n": network, "d": day},
        )
    }


def manifest_rows(export_dir: Path) -> dict[str, int]:
    """Rows per table according to an export's META.json."""
    doc = json.loads((export_dir / "META.json").read_text())
    return {r["name"]: r["rows"] for r in doc["resources"]}


def ledger_runs(instance: str | None = None) -> list[Mapping[str, Any]]:
    """Ledger run rows, oldest first."""
    with open_ledger() as ledger:
        return ledger.runs_for(instance)


def temp_leftovers() -> list[Path]:
    """Anything left under the home's temp dir."""
    tmp = get_settings().tmp_dir
    return sorted(tmp.rglob("*")) if tmp.exists() else []


def rewrite_manifest(export_dir: Path, **overrides: Any) -> dict[str, Any]:
    """Rebuild META.json from the files on disk (after a test changed a file), with overrides."""
    doc = json.loads((export_dir / "META.json").read_text())
    rebuilt = build_manifest(
        export_dir,
        name=doc["name"],
        source=doc["x-headwater"]["source"],
        partition=doc["x-headwater"]["partition"],
        constants={"window_days": doc["x-headwater"]["window_days"]},
        tables={r["name"]: r["rows"] for r in doc["resources"]},
    )
    rebuilt.update(overrides)
    write_manifest(export_dir, rebuilt)
    return rebuilt


def edit_manifest(export_dir: Path, edit: Any) -> None:
    """Apply ``edit(doc)`` to META.json in place."""
    path = export_dir / "META.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
