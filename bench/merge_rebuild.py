"""What publishing a merge-mode batch by partition rebuild costs, against a plain insert.

Since round 2, a merge table's batch is published by rebuilding each partition it touches
(current rows FINAL whose key the batch lacks, plus the batch) and swapping it in, so a
plain ``SELECT count()`` never sees two versions of a key. The old way inserted the batch
with a deduplication token and left duplicates to ClickHouse's background merges.

OpenAQ-sized: ``openaq.measurements`` (ReplacingMergeTree by sensor and hour, monthly
partitions); a run brings a few thousand new hourly values, some overlapping the last
run's. Measured on embedded chDB for partitions of 100k and 1M existing rows.

    uv run python bench/merge_rebuild.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import clickhouse_connect

from headwater.loading import StagedTable, plan_publish, publish, qualified
from headwater.sources.openaq import OPENAQ
from headwater.tables import table_ddl

DATABASE = "bench"
SPEC = OPENAQ.table("measurements")
BATCH_ROWS = 5_000  # e.g. 2 locations x 10 sensors x 250 hourly values
OVERLAP = 500  # values the previous run already brought (revised by the API)


def fill(client: clickhouse_connect.driver.Client, table: str, rows: int, offset_hours: int, batch: str) -> None:
    sensors = 100
    client.command(
        f"INSERT INTO {qualified(DATABASE, table)} SELECT 1 AS location_id, number % {sensors} + 1 AS sensor_id, "
        "'pm25', 'µg/m³', rand() % 100 / 3.0, "
        f"toDateTime64('2026-11-01 00:00:00', 3, 'UTC') + toIntervalHour(intDiv(number, {sensors}) + {offset_hours}), "
        f"NULL, '{batch}', now64(3, 'UTC') FROM numbers({rows})"
    )


def once(existing: int, rebuild: bool) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        client = clickhouse_connect.get_client(dsn=f"chdb://{Path(tmp) / 'wh'}")
        client.command(f"CREATE DATABASE {DATABASE}")
        client.command(table_ddl(SPEC, DATABASE, SPEC.name, ()))
        client.command(table_ddl(SPEC, DATABASE, "_stg_measurements_bench", ()))
        # 100 sensors x hourly values from 2026-11-01; the batch continues the last hours (monthly partitions)
        fill(client, SPEC.name, existing, 0, "old")
        client.command(f"OPTIMIZE TABLE {qualified(DATABASE, SPEC.name)} FINAL")
        last_hour = existing // 100
        fill(client, "_stg_measurements_bench", BATCH_ROWS, last_hour - OVERLAP // 100, "new")
        staged = StagedTable(SPEC.name, "_stg_measurements_bench", BATCH_ROWS, SPEC.write_mode, SPEC.key)
        started = time.perf_counter()
        if rebuild:
            plans, _ = plan_publish(
                client, database=DATABASE, staged=[staged], partition={}, partition_by=(), tag="bench"
            )
            publish(client, source="bench", database=DATABASE, plans=plans)
        else:
            client.command(
                f"INSERT INTO {qualified(DATABASE, SPEC.name)} SELECT * FROM {qualified(DATABASE, staged.staging)}",
                settings={"insert_deduplication_token": "bench:measurements"},
            )
        elapsed = time.perf_counter() - started
        plain = int(client.command(f"SELECT count() FROM {qualified(DATABASE, SPEC.name)}"))  # type: ignore[arg-type]
        final = int(client.command(f"SELECT count() FROM {qualified(DATABASE, SPEC.name)} FINAL"))  # type: ignore[arg-type]
        client.close()
        return elapsed, plain, final


def main() -> None:
    print(f"merge publish of a {BATCH_ROWS}-row batch ({OVERLAP} keys overlapping); existing rows: 100 sensors, hourly")
    print(f"{'existing rows':>14} {'method':>20} {'median s':>9} {'count()':>9} {'FINAL':>9}")
    for existing in (100_000, 1_000_000):
        for rebuild in (False, True):
            results = [once(existing, rebuild) for _ in range(3)]
            elapsed = statistics.median(r[0] for r in results)
            _, plain, final = results[-1]
            method = "rebuild + swap" if rebuild else "insert (old)"
            print(f"{existing:>14,} {method:>20} {elapsed:>9.3f} {plain:>9,} {final:>9,}")


if __name__ == "__main__":
    main()
