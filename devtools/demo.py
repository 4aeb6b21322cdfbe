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
import time
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from blocks.ledger import open_ledger
from blocks.warehouse import ClickHouseWarehouse
from commands.app import stdout
from devtools.catalog_generator import write_catalog
from devtools.export_server import ExportServer
from devtools.generate import write_export
from devtools.replays import FIXTURES, REGISTRARS, DemoRun
from flows.catalog import ingest_catalog, search
from flows.sot import ingest_sot
from headwater.cli import local_runs, parse_command_line, summary_line
from headwater.ledger import SUCCESSES
from headwater.loading import qualified
from headwater.outcome import BatchOutcome, status_of
from headwater.settings import get_settings
from headwater.sources.sot.contract import SOT

DEMO_DATE = date(2026, 11, 22)


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


class Steps:
    """The demo's progress: a spinner for the step under way (on a terminal), then one line per finished step."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.failed = False

    def __enter__(self) -> Steps:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def generate(self, root: Path, networks: list[str], day: date, alerts: int) -> None:
        """Write the exports with a bar over the networks; one line when done."""
        started = time.monotonic()
        task = self.progress.add_task(f"generating SOT exports ({day})", total=len(networks))
        for index, network in enumerate(networks):
            if not (root / network / day.isoformat() / "META.json").exists():
                write_export(root, network, day, alerts + index * alerts // 4)
            self.progress.advance(task)
        self.progress.remove_task(task)
        self.console.print(
            f"[green]✓[/] SOT exports for {', '.join(networks)} ({day}) in {time.monotonic() - started:.1f} s",
            highlight=False,
        )

    def run(self, label: str, call: Callable[[], Any]) -> Any:
        """Run one flow call; print its summary line, or its one-line error (and go on)."""
        task = self.progress.add_task(label, total=None)
        try:
            result = call()
        except Exception as error:  # report every step, then fail
            self.failed = True
            self.console.print(f"[red]✗[/] {' '.join(str(error).splitlines())}", highlight=False, markup=True)
            return None
        finally:
            self.progress.remove_task(task)
        for outcome in result.values() if isinstance(result, dict) else [result]:
            line = summary_line(outcome) if isinstance(outcome, BatchOutcome) else f"{label}: {status_of(outcome)}"
            ok = status_of(outcome) in SUCCESSES
            self.failed = self.failed or not ok
            self.console.print(f"{'[green]✓[/]' if ok else '[red]✗[/]'} {escape(line)}", highlight=False)
        return result


def sot_table(networks: list[str], day: date) -> Table:
    """Rows per SOT table per network for ``day``, read back from ClickHouse."""
    settings = get_settings()
    counts = warehouse_counts(SOT.database_in(settings), day)
    table = Table(
        "table", *networks, title=f"SOT {day} (database {SOT.database_in(settings)})", title_justify="left", box=None
    )
    for column in table.columns[1:]:
        column.justify = "right"
    for name in SOT.tables:
        if name in counts:
            table.add_row(name, *(f"{counts[name].get(n, 0):,}" for n in networks))
        else:
            table.add_row(name, "not ingested (excluded)", *([""] * (len(networks) - 1)))
    return table


def api_table(runs: list[DemoRun]) -> Table:
    """Rows per API table read back from ClickHouse, with each instance's ledger status."""
    with ClickHouseWarehouse.from_settings().session() as client:
        existing = {(db, name) for db, name in client.query("SELECT database, name FROM system.tables").result_rows}
        counts = {
            (demo.database, table): int(client.command(f"SELECT count() FROM {qualified(demo.database, table)}"))  # type: ignore[arg-type]
            for demo in runs
            for table in demo.tables
            if (demo.database, table) in existing
        }
    table = Table("instance", "ledger", "rows in the warehouse", title="API sources", title_justify="left", box=None)
    with open_ledger() as ledger:
        for demo in runs:
            runs_of = ledger.runs_for(demo.instance)
            last = runs_of[-1]["status"] if runs_of else "-"
            rows = ", ".join(f"{demo.database}.{t} {counts.get((demo.database, t), 0):,}" for t in demo.tables)
            table.add_row(demo.instance, last, rows)
    return table


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


def print_catalog_summary(console: Console) -> None:
    """Print the catalog's rows and the top 3 search results of a query."""
    with ClickHouseWarehouse.from_settings().session() as client:
        counts = [
            f"{table} {client.command(f'SELECT count() FROM catalog.{table}')}"
            for table in ("brands", "products", "offers", "product_vectors")
            if client.command(f"EXISTS TABLE catalog.{table}")
        ]
    console.print(f"\nCatalog demo-shop (JSON-LD on 127.0.0.1): {', '.join(counts)}", highlight=False)
    hits = Table("score", "sku", "name", title=f'search "{DEMO_QUERY}"', title_justify="left", box=None)
    for hit in search(DEMO_QUERY, k=3):
        hits.add_row(f"{hit.score:.4f}", hit.sku, hit.name)
    console.print(hits)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=40_000, help="raw_alerts rows of the first network")
    parser.add_argument("--date", type=date.fromisoformat, default=DEMO_DATE)
    args = parse_command_line(parser, argv)
    settings = get_settings()
    networks = settings.sot_networks
    root = settings.home_dir / "demo-exports"
    console = stdout()
    ledger = settings.home_dir / "ledger.db" if not settings.ledger_url else "(configured)"
    console.print(f"Headwater demo: warehouse {ClickHouseWarehouse.from_settings().describe()}, ledger {ledger}")
    with Steps(console) as steps:
        steps.generate(root, networks, args.date, args.alerts)
        with ExportServer(root) as server, local_runs():
            for network in networks:
                steps.run(
                    f"sot-{network} {args.date}", partial(ingest_sot, network, args.date, base_url=server.base_url)
                )
            api_runs = [register(server) for register in REGISTRARS]
            for demo in api_runs:
                steps.run(demo.instance, partial(demo.run, server.root_url))
            config = prepare_catalog(root, server.base_url)
            steps.run("catalog-demo-shop", partial(ingest_catalog, "demo-shop", str(config)))
    console.print()
    console.print(sot_table(networks, args.date))
    console.print()
    console.print(api_table(api_runs))
    print_catalog_summary(console)
    return 1 if steps.failed else 0


if __name__ == "__main__":
    sys.exit(main())
