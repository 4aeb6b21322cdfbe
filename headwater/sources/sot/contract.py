"""The SOT export contract as code: one pandera model per table.

The columns, types, nullability, keys and rules are those of the contract
(`docs/contracts/sot-export.md`); the ClickHouse DDL derives from these models.
"""

from __future__ import annotations

from datetime import date

import pandera.polars as pa
import polars as pl
from pandera.engines.polars_engine import DateTime

from headwater.spec import SourceSpec
from headwater.tables import TableSpec

UTC_MS = {"time_unit": "ms", "time_zone": "UTC"}


class SotTable(pa.DataFrameModel):
    """Columns every SOT table carries: the partition and the manifest's window."""

    network: str = pa.Field(str_length={"min_value": 1})
    processing_date: date
    window_days: pl.Int16 = pa.Field(gt=0)

    class Config:
        strict = True
        coerce = True


class RawAlerts(SotTable):
    """``raw_alerts``: one row per alert, keyed by ``alert_id``."""

    alert_id: str = pa.Field(str_length={"min_value": 1})
    address: str = pa.Field(str_length={"min_value": 1, "max_value": 128})
    typology: str
    severity: float = pa.Field(ge=0, le=1)
    volume_usd: float = pa.Field(ge=0, nullable=True)
    block_number: int = pa.Field(ge=0)
    detected_at: DateTime = pa.Field(dtype_kwargs=UTC_MS)
    description: str = pa.Field(nullable=True)


class RawFeatures(SotTable):
    """``raw_features``: graph features per address, keyed by ``address``."""

    address: str = pa.Field(str_length={"min_value": 1})
    degree_in: int = pa.Field(ge=0)
    degree_out: int = pa.Field(ge=0)
    total_in_usd: float = pa.Field(ge=0)
    total_out_usd: float = pa.Field(ge=0)
    tx_count: int = pa.Field(ge=0)
    first_seen: DateTime = pa.Field(dtype_kwargs=UTC_MS)
    last_seen: DateTime = pa.Field(dtype_kwargs=UTC_MS)
    risk_score: float = pa.Field(ge=0, le=1, nullable=True)

    @pa.dataframe_check(error="last_seen >= first_seen")
    @classmethod
    def seen_in_order(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """``last_seen`` is never before ``first_seen``."""
        return data.lazyframe.select(pl.col("last_seen") >= pl.col("first_seen"))


class RawClusters(SotTable):
    """``raw_clusters``: cluster membership, keyed by (``cluster_id``, ``address``)."""

    cluster_id: str = pa.Field(str_length={"min_value": 1})
    address: str = pa.Field(str_length={"min_value": 1})
    cluster_size: int = pa.Field(ge=1)
    cluster_type: str


class RawAddressLabels(SotTable):
    """``raw_address_labels``: labels per address, keyed by (``address``, ``label``, ``source``)."""

    address: str = pa.Field(str_length={"min_value": 1})
    label: str = pa.Field(str_length={"min_value": 1})
    category: str
    source: str
    confidence: float = pa.Field(ge=0, le=1)


class RawMoneyFlows(SotTable):
    """``raw_money_flows``: published, not ingested by default (excluded by settings)."""

    from_address: str = pa.Field(str_length={"min_value": 1})
    to_address: str = pa.Field(str_length={"min_value": 1})
    amount_usd: float = pa.Field(ge=0)
    tx_count: int = pa.Field(ge=0)


SOT = SourceSpec(
    name="sot",
    partition_columns=("network", "processing_date"),
    constant_columns=("window_days",),
    date_column="processing_date",
    catch_up="all",  # every scheduled run carries its own processing date
    tables={
        spec.name: spec
        for spec in (
            TableSpec("raw_alerts", RawAlerts, key=("alert_id",)),
            TableSpec("raw_features", RawFeatures, key=("address",)),
            TableSpec("raw_clusters", RawClusters, key=("cluster_id", "address")),
            TableSpec("raw_address_labels", RawAddressLabels, key=("address", "label", "source")),
            TableSpec("raw_money_flows", RawMoneyFlows, key=("from_address", "to_address")),
        )
    },
)
