"""Process settings: the only module that reads environment variables.

Every knob has the ``HEADWATER_`` prefix. Secrets do not live here: they live in
Prefect Blocks (see ``blocks/``), which settings may name.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Headwater's process settings, read from ``HEADWATER_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="HEADWATER_", extra="ignore")

    home: Path = Field(
        default=Path(".headwater"),
        description="Holds the embedded warehouse, the SQLite ledger and per-run temp dirs.",
    )
    warehouse_url: str | None = Field(
        default=None,
        description="A chdb:///abs/path DSN or an http(s):// ClickHouse URL; default: chDB at <home>/warehouse.",
    )
    warehouse_block: str | None = Field(
        default=None,
        description="Name of a saved ClickHouseWarehouse block (takes precedence over warehouse_url).",
    )
    warehouse_lock_timeout_s: float = Field(
        default=3600.0,
        description="How long a run waits for the embedded warehouse lock before failing.",
    )
    warehouse_ingest: str = Field(
        default="auto",
        description="How staged files reach ClickHouse: 'file' (engine reads the Parquet file, "
        "embedded only), 'arrow' (Arrow batches over the client, any server) or 'auto'.",
    )
    ledger_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the metadata ledger; default: SQLite at <home>/ledger.db.",
    )
    ledger_block: str | None = Field(
        default=None,
        description="Name of a saved SqlAlchemyConnector block (takes precedence over ledger_url).",
    )

    http_timeout_s: float = Field(default=30.0, description="Connect/read timeout of one request.")
    http_attempts: int = Field(default=4, ge=1, description="Attempts per request on transient errors.")
    http_backoff_initial_s: float = Field(default=1.0, ge=0, description="First retry delay.")
    http_backoff_max_s: float = Field(default=60.0, ge=0, description="Longest retry delay.")
    http_user_agent: str = Field(default="headwater/0.1 (+https://github.com/headwater)")

    sot_base_url: str | None = Field(
        default=None, description="Where SOT exports live, e.g. https://sot.example/exports."
    )
    sot_database: str = Field(default="sot", description="ClickHouse database of the SOT tables.")
    sot_networks: Annotated[list[str], NoDecode] = Field(
        default=["ethereum", "bitcoin", "torus"], description="Networks the SOT publishes."
    )
    sot_excluded_tables: Annotated[list[str], NoDecode] = Field(
        default=["raw_money_flows"], description="Published tables that are deliberately not ingested."
    )

    validation_batch_rows: int = Field(
        default=250_000, ge=1, description="Rows per record batch when validating a Parquet file."
    )

    @field_validator("sot_networks", "sot_excluded_tables", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @property
    def home_dir(self) -> Path:
        """The absolute home directory."""
        return self.home.expanduser().resolve()

    @property
    def tmp_dir(self) -> Path:
        """Parent of the per-run temp dirs."""
        return self.home_dir / "tmp"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once; tests call ``get_settings.cache_clear()``."""
    return Settings()
