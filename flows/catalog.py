"""Catalog feeds: run one ingestor of ``ingestion.yaml`` (registry → feed → vectors), each stage a ledger row.

python -m flows.catalog run --ingestor NAME [--config PATH]
python -m flows.catalog search --query "…" [--k 10] [--ingestor NAME]

The configuration is ``--config``, else ``HEADWATER_INGESTION_CONFIG``, else
``./ingestion.yaml``. Exit codes are the SOT command's: 0 when every stage loaded or was
unchanged, 2 for a bad configuration or parameter (nothing read), 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow

from blocks.warehouse import ClickHouseWarehouse
from flows.factory import fails_with_reason
from headwater.api_batch import FetchResult
from headwater.batch import BatchRequest
from headwater.catalog.config import Ingestor, load_ingestion
from headwater.catalog.items import Registry
from headwater.catalog.vectors import Hit, load_embedder
from headwater.catalog.vectors import search as catalog_search
from headwater.cli import local_runs, parse_command_line, report_error, summary_line
from headwater.errors import ConfigurationError
from headwater.ledger import SUCCESSES
from headwater.outcome import BatchOutcome, RunResult, status_of
from headwater.params import FLOW_TIMEOUT_S
from headwater.settings import get_settings
from headwater.sources.catalog import (
    CATALOG_FEED,
    CATALOG_REGISTRY,
    CATALOG_VECTORS,
    FeedRules,
    StoredChunk,
    StoredProducts,
    catalog_database,
    feed_batch,
    product_rows,
    registry_batch,
    stored_products,
    vectors_batch,
)
from headwater.spec import SourceSpec
from tasks.catalog import cached_shard_parser
from tasks.fetch import run_api_batch


def ingestor_of(name: str, config: str | None = None) -> tuple[Ingestor, Path]:
    """The named ingestor of the configuration file, and the file; ConfigurationError when it is not there."""
    path = Path(config) if config else get_settings().ingestion_config
    ingestors = load_ingestion(path)
    if name not in ingestors:
        raise ConfigurationError(
            f"catalog-{name}", f"expected an ingestor of {path} ({', '.join(ingestors)}), found none"
        )
    return ingestors[name], path


def catalog_request(source: SourceSpec, ingestor: str, stage: str, location: str) -> BatchRequest:
    """The batch of one stage of an ingestor: instance ``catalog-<name>``, partition ``(name, stage)``."""
    return BatchRequest(
        source=source,
        instance=f"catalog-{ingestor}",
        partition={"ingestor": ingestor, "stage": stage},
        database=catalog_database(get_settings()),
        location=location,
    )


@flow(name="ingest-catalog", flow_run_name="catalog {ingestor}", timeout_seconds=FLOW_TIMEOUT_S)
@fails_with_reason
def ingest_catalog(ingestor: str, config: str | None = None) -> dict[str, RunResult]:
    """Run an ingestor's stages in order (registry, feed, vectors), each only when the one before succeeded.

    Args:
        ingestor: the ingestor's name in the configuration file
        config: path of the ingestion.yaml (default HEADWATER_INGESTION_CONFIG, else ./ingestion.yaml)

    """
    entry, path = ingestor_of(ingestor, config)
    settings = get_settings()
    database = catalog_database(settings)
    rules = FeedRules(
        threshold=settings.catalog_quality_threshold,
        keep_deleted=timedelta(days=settings.catalog_keep_deleted_days),
        now=datetime.now(UTC),
    )
    results: dict[str, RunResult] = {}
    registry = Registry()
    if entry.registry:
        location = entry.location(entry.registry, path.parent)
        request = catalog_request(CATALOG_REGISTRY, entry.name, "registry", location)

        def fetch_registry() -> object:
            nonlocal registry
            batch, registry = registry_batch(request.label, entry.name, location)
            return batch

        results["registry"] = run_api_batch(request, fetch_registry)  # type: ignore[arg-type]
        if status_of(results["registry"]) not in SUCCESSES:
            return results
    if entry.feed_path:
        location = entry.location(entry.feed_path, path.parent)
        request = catalog_request(CATALOG_FEED, entry.name, "feed", location)
        warehouse = ClickHouseWarehouse.from_settings()

        def scan_products() -> Iterator[StoredChunk]:
            after = ""
            while True:
                with warehouse.session() as client:
                    chunk = stored_products(client, database, entry.name, after)
                if not chunk:
                    return
                yield chunk
                after = chunk[-1][0]

        def read_products(skus: list[str]) -> list[dict[str, Any]]:
            with warehouse.session() as client:
                return product_rows(client, database, entry.name, skus)

        stored = StoredProducts(scan_products, read_products)
        results["feed"] = run_api_batch(
            request,
            lambda: feed_batch(request.label, entry.name, location, registry, rules, stored, cached_shard_parser),
        )
        if status_of(results["feed"]) not in SUCCESSES:
            return results
        embedder = load_embedder(settings.catalog_embedder)

        def fetch_vectors() -> FetchResult:
            with warehouse.session() as client:
                return vectors_batch(client, database, entry.name, embedder, rules.now)

        vectors = catalog_request(CATALOG_VECTORS, entry.name, "vectors", location)
        results["vectors"] = run_api_batch(vectors, fetch_vectors)
    return results


def search(query: str, k: int = 10, ingestor: str | None = None) -> list[Hit]:
    """The ``k`` catalog products nearest to ``query``, best first (for Python users; the CLI prints them)."""
    embedder = load_embedder(get_settings().catalog_embedder)
    with ClickHouseWarehouse.from_settings().session() as client:
        database = catalog_database(get_settings())
        return catalog_search(client, embedder, database, query, k, ingestor)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m flows.catalog", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one ingestor's stages")
    run.add_argument("--ingestor", required=True, help="the ingestor's name in ingestion.yaml")
    run.add_argument("--config", default=None, help="path of ingestion.yaml")
    find = commands.add_parser("search", help="the products nearest to a query")
    find.add_argument("--query", required=True, help="what to look for, in any language")
    find.add_argument("--k", type=int, default=10, help="how many results (default 10)")
    find.add_argument("--ingestor", default=None, help="only this ingestor's products")
    args = parse_command_line(parser, argv)
    if args.command == "search":
        try:
            hits = search(args.query, args.k, args.ingestor)
        except Exception as error:  # one-line reason
            return report_error(error)
        for hit in hits:
            print(f"{hit.score:.4f}  {hit.sku}  {hit.name}")
        return 0
    try:
        with local_runs():
            results = ingest_catalog(args.ingestor, args.config)
    except Exception as error:  # one-line reason; the traceback is in the logs
        return report_error(error)
    failed = False
    for stage, result in results.items():
        status = status_of(result)
        print(
            summary_line(result) if isinstance(result, BatchOutcome) else f"catalog-{args.ingestor} {stage}: {status}"
        )
        failed = failed or status not in SUCCESSES
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
