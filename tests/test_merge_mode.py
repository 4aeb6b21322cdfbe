"""The ``merge`` write mode on the real embedded warehouse: incremental batches accumulate,
overlapping keys deduplicate (newest wins), a repeated publish never duplicates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandera.polars as pa
import polars as pl
from pandera.engines.polars_engine import DateTime
from prefect import flow

from headwater.batch import BatchRequest
from headwater.outcome import BatchOutcome
from headwater.spec import SourceSpec
from headwater.tables import MERGE, TableSpec
from tasks.fetch import run_api_batch
from tests.helpers import ledger_runs, query

T0 = datetime(2026, 11, 1, tzinfo=UTC)


class Reading(pa.DataFrameModel):
    """A test table: one value per sensor and time."""

    feed: str
    sensor_id: int = pa.Field(ge=1)
    observed_at: DateTime = pa.Field(dtype_kwargs={"time_unit": "ms", "time_zone": "UTC"})
    value: float

    class Config:
        strict = True
        coerce = True


READINGS = SourceSpec(
    name="readings",
    partition_columns=("feed",),
    tables={
        "readings": TableSpec(
            "readings",
            Reading,
            key=("sensor_id", "observed_at"),
            write_mode=MERGE,
            partition_expr="toYYYYMM(observed_at)",
        )
    },
)


def frame(hours: range, value: float) -> pl.DataFrame:
    rows = [(sensor, T0 + timedelta(hours=h)) for sensor in (1, 2) for h in hours]
    return pl.DataFrame(
        {
            "feed": ["test"] * len(rows),
            "sensor_id": [s for s, _ in rows],
            "observed_at": [t for _, t in rows],
            "value": [value] * len(rows),
        },
        schema={"feed": pl.String, "sensor_id": pl.Int64, "observed_at": pl.Datetime("ms", "UTC"), "value": pl.Float64},
    )


@flow
def ingest_readings(hours: list[int], value: float) -> BatchOutcome:
    request = BatchRequest(
        source=READINGS,
        instance="readings-test",
        partition={"feed": "test"},
        database="readings",
    )
    result = run_api_batch(request, lambda: {"readings": frame(range(hours[0], hours[1]), value)})
    assert isinstance(result, BatchOutcome)
    return result


def test_merge_batches_accumulate_and_deduplicate(home: Path) -> None:
    first = ingest_readings([0, 5], 1.0)  # 2 sensors x 5 hours
    assert (first.status, first.rows_by_table) == ("loaded", {"readings": 10})
    second = ingest_readings([3, 8], 2.0)  # overlaps hours 3 and 4: 4 keys
    assert second.status == "loaded"
    assert query("SELECT count() FROM readings.readings FINAL")[0][0] == 16
    # a plain query never sees two versions of a key: the affected partitions are rebuilt and swapped
    assert query("SELECT count() FROM readings.readings")[0][0] == 16
    assert (
        query(
            "SELECT value FROM readings.readings FINAL WHERE observed_at = {t:DateTime64(3, 'UTC')} AND sensor_id = 1",
            {"t": T0 + timedelta(hours=4)},
        )[0][0]
        == 2.0
    )  # the newer batch wins
    assert query("SELECT sum(value) FROM readings.readings FINAL")[0][0] == 6 * 1.0 + 10 * 2.0
    runs = ledger_runs("readings-test")
    assert [(r["status"], r["rows_deduplicated"]) for r in runs] == [("loaded", 0), ("loaded", 4)]
    engine = query("SELECT engine, partition_key FROM system.tables WHERE database = 'readings' AND name = 'readings'")
    assert engine == [("ReplacingMergeTree", "toYYYYMM(observed_at)")]


def test_repeated_publish_of_the_same_batch_never_duplicates(home: Path) -> None:
    ingest_readings([0, 5], 1.0)
    ingest_readings([5, 10], 1.0)
    physical = query("SELECT count() FROM readings.readings")[0][0]
    again = ingest_readings([0, 5], 1.0)  # same content as the first batch, not the last version
    assert again.status == "loaded"
    # the affected partitions are rebuilt from their current rows plus the batch: nothing is duplicated
    assert query("SELECT count() FROM readings.readings")[0][0] == physical == 20
    assert query("SELECT count() FROM readings.readings FINAL")[0][0] == 20
