"""The SOT export contract as code: one pandera model per table.

The columns, types, nullability, keys and rules are those of the contract
(`docs/contracts/sot-export.md`); the ClickHouse DDL derives from these models.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandera.polars as pa
import polars as pl
from pandera.engines.polars_engine import DateTime
from pydantic import Field, field_validator, model_validator

from headwater.catchup import scheduled_date
from headwater.params import EXPORT_SCHEMES, PositiveInt, one_of
from headwater.settings import get_settings
from headwater.spec import DataClock, ExportSource, SourceParams, UrlParam
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

    @pa.dataframe_check(error="last_seen >= first_seen", statistics={"sql": "last_seen >= first_seen"})
    @classmethod
    def seen_in_order(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """``last_seen`` is never before ``first_seen`` (its SQL twin, in ``statistics``, runs in the engine)."""
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


def default_processing_date() -> date:
    """The day a deployment run was scheduled for (UTC), else today (UTC).

    A late run caught up after downtime loads the export of the day it was scheduled
    for, not of the day it happens to run.
    """
    scheduled = scheduled_date()
    return (scheduled or datetime.now(UTC)).date()


class SotParams(SourceParams):
    """Ingest the SOT export of ``network`` for ``processing_date`` (default: the scheduled day, UTC).

    Loads every contract table except the excluded ones into the ``sot`` database,
    replacing that network's partition for that date atomically. An export whose
    manifest equals the last loaded version is recorded ``unchanged`` and loads nothing.
    """

    network: str = Field(description="the network, one of HEADWATER_SOT_NETWORKS (ethereum, bitcoin, torus)")
    processing_date: date | None = Field(
        default=None,
        description="the export's day (default: the scheduled day, UTC)",
        json_schema_extra={"flag": "--date"},
    )
    window_days: PositiveInt = Field(default=195, description="the export's window, which its manifest must state")
    base_url: str | None = Field(default=None, description="http(s):// or file:// root of the exports")

    @field_validator("network")
    @classmethod
    def _known_network(cls, value: str) -> str:
        return one_of("a network", value, get_settings().sot_networks)

    @model_validator(mode="after")
    def _scheduled_day(self) -> SotParams:
        if self.processing_date is None:
            self.processing_date = default_processing_date()
        return self


SOT = ExportSource(
    name="sot",
    title="SOT daily exports",
    flow_name="ingest-sot",
    run_name="sot {network} {processing_date}",
    summary="Download, verify, validate and load one SOT export into ClickHouse.",
    database="sot",
    params=SotParams,
    instance="sot-{network}",
    urls=(UrlParam("base_url", "sot", None, EXPORT_SCHEMES),),
    url_template="{base_url}/{network}/{processing_date}",
    constants=("window_days",),
    excluded=lambda settings: settings.sot_excluded_tables,
    partition_columns=("network", "processing_date"),
    constant_columns=("window_days",),
    date_column="processing_date",
    data_clock=DataClock("raw_alerts", "processing_date", timedelta(days=3)),
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
