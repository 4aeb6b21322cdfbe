"""Deterministic, realistic SOT exports that follow the contract.

Used by the demo, the tests and the benchmark (the real SOT host is not reachable
here). Files are written in row groups, so generating millions of rows needs little
memory. Proportions per export: ``raw_alerts`` N, ``raw_features`` N/2,
``raw_clusters`` N/2, ``raw_address_labels`` N/4, ``raw_money_flows`` N/2.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from headwater.manifest import build_manifest, write_manifest
from headwater.sources.sot.contract import SOT
from headwater.tables import write_parquet

CHUNK_ROWS = 200_000
TYPOLOGIES = ("mixer", "peel_chain", "layering", "sanctioned_counterparty", "scam", "bridge_hop")
CLUSTER_TYPES = ("exchange", "service", "entity", "unknown")
LABELS = (
    ("exchange", "cex"),
    ("mixer", "privacy"),
    ("défi-pool", "defi"),
    ("phishing", "scam"),
    ("miner", "infra"),
)
LABEL_SOURCES = ("chainalysis-feed", "community", "internal-heuristics")


def _seed(network: str, processing_date: date, table: str, salt: int) -> int:
    text = f"{network}|{processing_date}|{table}|{salt}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little")


def _addresses(network: str, ids: np.ndarray) -> pl.Series:
    prefix = {"bitcoin": "bc1q", "torus": "5"}.get(network, "0x")
    mixed = (ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) & np.uint64(0xFFFFFFFFFFFF)
    return pl.select(
        pl.format(
            "{}{}{}",
            pl.lit(prefix),
            pl.Series(mixed).cast(pl.String).str.zfill(15),
            pl.Series(ids).cast(pl.String),
        )
    ).to_series()


def _common(network: str, processing_date: date, window_days: int, n: int) -> dict[str, object]:
    return {
        "network": pl.repeat(network, n, eager=True, dtype=pl.String),
        "processing_date": pl.repeat(processing_date, n, eager=True, dtype=pl.Date),
        "window_days": pl.repeat(window_days, n, eager=True, dtype=pl.Int16),
    }


def _alerts(network: str, day: date, window: int, rng: np.random.Generator, ids: np.ndarray) -> pl.DataFrame:
    n = len(ids)
    start = datetime.combine(day, datetime.min.time(), UTC) - timedelta(days=window)
    offsets_ms = rng.integers(0, window * 86_400_000, n)
    volume = rng.lognormal(8, 2, n)
    volume_null = rng.random(n) < 0.05
    desc_null = rng.random(n) < 0.3
    typ = rng.integers(0, len(TYPOLOGIES), n)
    return pl.DataFrame(
        {
            **_common(network, day, window, n),
            "alert_id": pl.select(
                pl.format(
                    "{}-{}-{}",
                    pl.lit(network[:3]),
                    pl.lit(day.strftime("%Y%m%d")),
                    pl.Series(ids).cast(pl.String).str.zfill(10),
                )
            ).to_series(),
            "address": _addresses(network, rng.integers(0, max(n // 2, 1), n)),
            "typology": pl.Series([TYPOLOGIES[i] for i in range(len(TYPOLOGIES))]).gather(typ),
            "severity": rng.random(n),
            "volume_usd": pl.Series(np.where(volume_null, np.nan, volume)).fill_nan(None),
            "block_number": rng.integers(10_000_000, 21_000_000, n),
            "detected_at": pl.Series(offsets_ms).cast(pl.Duration("ms")) + start,
            "description": pl.Series(["flagged by rule — see typology"] * n).set(pl.Series(desc_null), None)
            if n
            else pl.Series([], dtype=pl.String),
        }
    )


def _features(network: str, day: date, window: int, rng: np.random.Generator, ids: np.ndarray) -> pl.DataFrame:
    n = len(ids)
    start = datetime.combine(day, datetime.min.time(), UTC) - timedelta(days=window)
    first = rng.integers(0, window * 86_400_000, n)
    span = rng.integers(0, 30 * 86_400_000, n)
    risk = rng.random(n)
    return pl.DataFrame(
        {
            **_common(network, day, window, n),
            "address": _addresses(network, ids),
            "degree_in": rng.integers(0, 500, n),
            "degree_out": rng.integers(0, 500, n),
            "total_in_usd": rng.lognormal(9, 2, n),
            "total_out_usd": rng.lognormal(9, 2, n),
            "tx_count": rng.integers(1, 5_000, n),
            "first_seen": pl.Series(first).cast(pl.Duration("ms")) + start,
            "last_seen": pl.Series(first + span).cast(pl.Duration("ms")) + start,
            "risk_score": pl.Series(np.where(rng.random(n) < 0.1, np.nan, risk)).fill_nan(None),
        }
    )


def _clusters(network: str, day: date, window: int, rng: np.random.Generator, ids: np.ndarray) -> pl.DataFrame:
    n = len(ids)
    return pl.DataFrame(
        {
            **_common(network, day, window, n),
            "cluster_id": pl.select(pl.format("cl-{}", pl.Series(ids // 8).cast(pl.String))).to_series(),
            "address": _addresses(network, ids),
            "cluster_size": np.full(n, 8, dtype=np.int64),
            "cluster_type": pl.Series(list(CLUSTER_TYPES)).gather(rng.integers(0, len(CLUSTER_TYPES), n)),
        }
    )


def _labels(network: str, day: date, window: int, rng: np.random.Generator, ids: np.ndarray) -> pl.DataFrame:
    n = len(ids)
    pick = rng.integers(0, len(LABELS), n)
    return pl.DataFrame(
        {
            **_common(network, day, window, n),
            "address": _addresses(network, ids),
            "label": pl.Series([label for label, _ in LABELS]).gather(pick),
            "category": pl.Series([category for _, category in LABELS]).gather(pick),
            "source": pl.Series(list(LABEL_SOURCES)).gather(ids % len(LABEL_SOURCES)),
            "confidence": rng.random(n),
        }
    )


def _flows(network: str, day: date, window: int, rng: np.random.Generator, ids: np.ndarray) -> pl.DataFrame:
    n = len(ids)
    return pl.DataFrame(
        {
            **_common(network, day, window, n),
            "from_address": _addresses(network, ids),
            "to_address": _addresses(network, ids + 1),
            "amount_usd": rng.lognormal(7, 2, n),
            "tx_count": rng.integers(1, 100, n),
        }
    )


Builder = Callable[[str, date, int, np.random.Generator, np.ndarray], pl.DataFrame]
BUILDERS: dict[str, tuple[Builder, float]] = {
    "raw_alerts": (_alerts, 1.0),
    "raw_features": (_features, 0.5),
    "raw_clusters": (_clusters, 0.5),
    "raw_address_labels": (_labels, 0.25),
    "raw_money_flows": (_flows, 0.5),
}


def _chunks(rows: int) -> Iterator[np.ndarray]:
    """Row ids in chunks; one empty chunk for an empty table (so its file has the schema)."""
    if rows == 0:
        yield np.arange(0, dtype=np.int64)
    for start in range(0, rows, CHUNK_ROWS):
        yield np.arange(start, min(rows, start + CHUNK_ROWS), dtype=np.int64)


def write_export(
    root: Path,
    network: str,
    processing_date: date,
    alerts: int,
    *,
    window_days: int = 195,
    salt: int = 0,
) -> Path:
    """Write ``{root}/{network}/{processing_date}/`` with every table and META.json."""
    directory = root / network / processing_date.isoformat()
    directory.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for table, (build, share) in BUILDERS.items():
        rng = np.random.default_rng(_seed(network, processing_date, table, salt))
        rows = int(alerts * share)
        frames = (build(network, processing_date, window_days, rng, ids) for ids in _chunks(rows))
        counts[table] = write_parquet(directory / f"{table}.parquet", SOT.table(table), frames)
    created = datetime.combine(processing_date, datetime.min.time(), UTC) + timedelta(minutes=40)
    document = build_manifest(
        directory,
        name=f"sot-{network}-{processing_date}",
        source="sot",
        partition={"network": network, "processing_date": processing_date},
        constants={"window_days": window_days},
        tables=counts,
        created=created,
    )
    write_manifest(directory, document)
    return directory
