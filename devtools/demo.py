"""The demo: the README's main job, on the embedded defaults and with no internet.

Generates deterministic SOT exports for the three networks (every contract table,
including the excluded one), serves them on 127.0.0.1 together with recorded responses
of the API sources and a catalog (a generated JSON-LD registry and sharded feed plus the
three real JSON-LD fixtures), runs the SOT flow for each network, each API source's flow
and the catalog ingestor into the embedded warehouse, and prints what landed: rows per
table read back from ClickHouse, each run's ledger status, and the top 3 catalog search
results of a query.

    python -m devtools.demo [--alerts 40000] [--date 2026-11-22]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import date
from pathlib import Path

from blocks.ledger import open_ledger
from blocks.warehouse import ClickHouseWarehouse
from devtools.catalog_generator import write_catalog
from devtools.export_server import ExportServer
from devtools.generate import write_export
from devtools.replays import FIXTURES, REGISTRARS, DemoRun
from flows.catalog import ingest_catalog, search
from flows.sot import ingest_sot
from headwater.cli import local_runs
from headwater.loading import qualified
from headwater.outcome import status_of
from headwater.settings import get_settings
from headwater.sources.sot.contract import SOT

DEMO_DATE = date(2026, 11, 22)


def generate(root: Path, networks: list[str], day: date, alerts: int) -> None:
    """Write one export per network (skipped when already there)."""
    for index, network in enumerate(networks):
        if not (root / network / day.isoformat() / "META.json").exists():
            write_export(root, network, day, alerts + index * alerts // 4)


def warehouse_counts(database: str, day: date) -> dict[str, dict[str, int]]:
    """Rows per table per network for ``day``, read back from ClickHouse."""
    counts: dict[str, dict[str, int]] = {}
    with ClickHouseWarehouse.from_settings().session() as client:
        existing = {
            row[0]
            for row in client.query(
                "SELECT name FROM system.tables WHERE database = {db:String}", parameters={"db": database}
            ).result_rows
        }
        for table in SOT.tables:
            if table not in existing:
                continue
            rows = client.query(
                f"SELECT network, count() FROM {qualified(database, table)} "
                "WHERE processing_date = {day:Date} GROUP BY network ORDER BY network",
                parameters={"day": day},
            ).result_rows
            counts[table] = {str(network): int(n) for network, n in rows}
    return counts


def print_summary(networks: list[str], day: date, statuses: dict[str, str]) -> None:
    """Print rows per table per network and the ledger status of each run."""
    settings = get_settings()
    counts = warehouse_counts(SOT.database_in(settings), day)
    width = max(len(t) for t in SOT.tables) + 2
    print(f"\nWarehouse {ClickHouseWarehouse.from_settings().describe()}, database {SOT.database_in(settings)}, {day}")
    print("table".ljust(width) + "".join(n.rjust(12) for n in networks))
    for table in SOT.tables:
        if table in counts:
            print(table.ljust(width) + "".join(str(counts[table].get(n, 0)).rjust(12) for n in networks))
        else:
            print(table.ljust(width) + "not ingested (excluded)".rjust(12 * len(networks)))
    print("\nLedger " + str(settings.home_dir / "ledger.db" if not settings.ledger_url else "(configured)"))
    with open_ledger() as ledger:
        for network in networks:
            runs = ledger.runs_for(f"sot-{network}", f"{network}/{day}")
            last = runs[-1] if runs else None
            line = f"  sot-{network:<10} {statuses.get(network, '?'):<10}"
            if last:
                line += (
                    f" ledger={last['status']} rows={last['rows_loaded']} bytes={last['bytes']}"
                    f" duration={last['duration_s']:.2f}s"
                )
            print(line)


def run_api_sources(server: ExportServer) -> tuple[list[DemoRun], dict[str, str]]:
    """Run every API source once against its recorded responses replayed by ``server``."""
    runs = [register(server) for register in REGISTRARS]
    statuses: dict[str, str] = {}
    for demo in runs:
        try:
            statuses[demo.instance] = status_of(demo.run(server.root_url))
        except Exception as error:  # report every source, then fail
            statuses[demo.instance] = "failed"
            print(f"error: {error}", file=sys.stderr)
    return runs, statuses


def print_api_summary(runs: list[DemoRun], statuses: dict[str, str]) -> None:
    """Print rows per API table read back from ClickHouse and each run's ledger status."""
    print("\nAPI sources (recorded responses replayed on 127.0.0.1)")
    with ClickHouseWarehouse.from_settings().session() as client:
        existing = {(db, name) for db, name in client.query("SELECT database, name FROM system.tables").result_rows}
        counts = {
            (demo.database, table): int(client.command(f"SELECT count() FROM {qualified(demo.database, table)}"))  # type: ignore[arg-type]
            for demo in runs
            for table in demo.tables
            if (demo.database, table) in existing
        }
    with open_ledger() as ledger:
        for demo in runs:
            runs_of = ledger.runs_for(demo.instance)
            last = runs_of[-1]["status"] if runs_of else "-"
            tables = ", ".join(f"{demo.database}.{t}: {counts.get((demo.database, t), 0)}" for t in demo.tables)
            print(f"  {demo.instance:<30} {statuses.get(demo.instance, '?'):<10} ledger={last:<10} {tables}")


DEMO_QUERY = "milk powder for a baby"


def prepare_catalog(root: Path, base_url: str) -> Path:
    """A generated catalog plus the three real JSON-LD fixtures, served remotely; returns its ingestion.yaml."""
    folder = root / "catalog"
    catalog = write_catalog(folder, products=40, shard_size=20)
    for fixture in sorted((FIXTURES / "jsonld").glob("*.jsonld")):
        shutil.copy(fixture, folder / fixture.name)
    index = json.loads(catalog.feed.read_text())
    index["dataFeedElement"] += [
        {"@type": "DataDownload", "contentUrl": name}
        for name in (
            "product_woolworths_nan-optipro_offer_gtin13.jsonld",
            "productgroup_mavibasim_bloknot_hasVariant_variesBy.jsonld",
        )
    ]
    catalog.feed.write_text(json.dumps(index))
    config = folder / "ingestion.yaml"
    config.write_text(
        "ingestion:\n  - name: demo-shop\n    source_type: remote\n"
        f"    registry: {base_url}/catalog/registry.jsonld\n    feed_path: {base_url}/catalog/feed.jsonld\n"
        '    schedule: "0 */4 * * *"\n'
    )
    return config


def run_catalog(config: Path) -> str:
    """Run the demo's catalog ingestor; its worst stage status."""
    try:
        results = ingest_catalog("demo-shop", str(config))
    except Exception as error:  # reported, then the demo fails
        print(f"error: {error}", file=sys.stderr)
        return "failed"
    statuses = [status_of(r) for r in results.values()]
    return "loaded" if all(s in ("loaded", "unchanged") for s in statuses) and len(statuses) == 3 else "failed"


def print_catalog_summary(status: str) -> None:
    """Print the catalog's rows and the top 3 search results of a query."""
    print(f"\nCatalog feed (ingestion.yaml, JSON-LD served on 127.0.0.1): {status}")
    with ClickHouseWarehouse.from_settings().session() as client:
        for table in ("brands", "products", "offers", "product_vectors"):
            if client.command(f"EXISTS TABLE catalog.{table}"):
                print(f"  catalog.{table}: {client.command(f'SELECT count() FROM catalog.{table}')}")
    print(f'  search "{DEMO_QUERY}":')
    for hit in search(DEMO_QUERY, k=3):
        print(f"    {hit.score:.4f}  {hit.sku:<12} {hit.name}")


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=40_000, help="raw_alerts rows of the first network")
    parser.add_argument("--date", type=date.fromisoformat, default=DEMO_DATE)
    args = parser.parse_args(argv)
    settings = get_settings()
    networks = settings.sot_networks
    root = settings.home_dir / "demo-exports"
    generate(root, networks, args.date, args.alerts)
    statuses: dict[str, str] = {}
    failed = False
    with ExportServer(root) as server, local_runs():
        for network in networks:
            try:
                statuses[network] = status_of(ingest_sot(network, args.date, base_url=server.base_url))
            except Exception as error:  # report every network, then fail
                statuses[network] = "failed"
                failed = True
                print(f"error: {error}", file=sys.stderr)
        api_runs, api_statuses = run_api_sources(server)
        catalog_status = run_catalog(prepare_catalog(root, server.base_url))
    print_summary(networks, args.date, statuses)
    print_api_summary(api_runs, api_statuses)
    print_catalog_summary(catalog_status)
    failed = failed or "failed" in api_statuses.values() or catalog_status == "failed"
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
