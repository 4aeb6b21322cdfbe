"""A source as data: one typed declaration per source, read by the one flow factory.

``SourceSpec`` is what the shared pipeline needs (tables, partition, catch-up);
``ApiSource`` and ``ExportSource`` add what a flow needs: its Prefect name, the
parameters model (checks, defaults, descriptions for the command line and the UI),
the instance-name template, the default database and URLs, the queue, and for an
API source its one ``fetch`` function. ``flows/factory.py`` builds every source's
flow and ``headwater/cli.py`` its command line from these declarations.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError

from headwater.errors import ConfigurationError
from headwater.http import DECLARED_RATE_LIMITS
from headwater.params import HTTP_SCHEMES, check_url
from headwater.tables import TableSpec

if TYPE_CHECKING:
    from headwater.settings import Settings


@dataclass(frozen=True)
class DataClock:
    """Where the time of a source's newest data lives, and how old it may be (read by source health).

    ``expr`` is a column of ``table`` (or a ClickHouse expression over its columns) whose
    maximum over an instance's rows is the instance's newest data time, a Date or a
    DateTime; ``max_age`` is how old that may be on an instance whose runs are on time
    before health calls it ``degraded`` (None: the age is shown, not judged).
    """

    table: str
    expr: str
    max_age: timedelta | None = None


@dataclass(frozen=True)
class SourceSpec:
    """Everything the shared pipeline needs to know about one source.

    ``partition_columns`` name the columns that identify one batch (they are in every
    table and are the ClickHouse partition key); ``constant_columns`` are further
    columns whose value is fixed per batch by the manifest (e.g. ``window_days``);
    ``date_column`` is the partition column that retention compares with its cutoff;
    ``catch_up`` is what a deployment does with runs missed during downtime
    (``latest`` or ``all``, see ``headwater/catchup.py``); ``data_clock`` where health
    reads the age of the newest data (default: ``date_column``, else ``_loaded_at``, of
    the first table; not judged).
    """

    name: str
    tables: Mapping[str, TableSpec]
    partition_columns: tuple[str, ...]
    constant_columns: tuple[str, ...] = ()
    date_column: str | None = None
    catch_up: str = "latest"
    data_clock: DataClock | None = None

    def table(self, name: str) -> TableSpec:
        """The spec of table ``name``; KeyError when the contract has no such table."""
        return self.tables[name]


class SourceParams(BaseModel):
    """A source's flow parameters: names, types, defaults, checks and descriptions in one model.

    The flow's signature (what the Prefect UI shows and a deployment may set) and the
    command line's flags derive from the fields; a field's ``json_schema_extra={"flag":
    "--date"}`` names a flag that differs from ``--<field-name>``. A check raises
    ``ValueError("expected …, found …")``; the flow turns it into one ConfigurationError
    line naming the instance. Partition values are read from the model by column name,
    so a partition column that is not a parameter is a property here.
    """

    model_config = ConfigDict(extra="forbid")

    @property
    def excluded_tables(self) -> frozenset[str]:
        """Contract tables this run does not load (e.g. OSM layers not asked for)."""
        return frozenset()


P = TypeVar("P", bound=SourceParams)


@dataclass(frozen=True)
class UrlParam:
    """A URL parameter of a flow: ``param`` (``base_url``, ``ecb_url``), its settings key, its default.

    A run uses the parameter, else ``HEADWATER_BASE_URLS[key]``, else ``default``; a
    source without a public default (``None``) fails clearly when neither is set.
    """

    param: str
    key: str
    default: str | None
    schemes: tuple[str, ...] = HTTP_SCHEMES
    rate_limit: float | None = None
    """Requests per second the public host is asked at most (``HEADWATER_HTTP_RATE_LIMITS`` overrides it)."""

    def __post_init__(self) -> None:
        if self.rate_limit and self.default:
            DECLARED_RATE_LIMITS[urlsplit(self.default).hostname or ""] = self.rate_limit


@dataclass(frozen=True, kw_only=True)
class DeclaredSource(SourceSpec, Generic[P]):
    """What a source's flow and command line are built from (see ``ApiSource``, ``ExportSource``).

    ``instance`` is the instance-name template, formatted with the parameters model's
    fields and properties (``sot-{network}``); it must produce the deployment's name, so
    that health and freshness find the deployment's schedule (a meta-test checks it).
    ``title`` is how people name the source (``World Bank``); ``summary`` is the one-line
    description of the flow and its command line.
    """

    title: str
    flow_name: str
    run_name: str
    summary: str
    database: str
    params: type[P]
    instance: str
    urls: tuple[UrlParam, ...] = ()

    def instance_of(self, params: P) -> str:
        """The instance name of a run with these parameters."""
        return self.instance.format_map(_Attributes(params))

    def database_in(self, settings: Settings) -> str:
        """The source's ClickHouse database: ``HEADWATER_DATABASES[name]``, else the declared default."""
        return settings.databases.get(self.name, self.database)

    def label_of(self, raw: Mapping[str, Any], failed: Collection[str] = ()) -> str:
        """How errors name a run with invalid parameters: its instance if the valid ones give it, else the source."""
        try:
            fields = self.params.model_fields
            defaults = {n: f.get_default(call_default_factory=True) for n, f in fields.items() if not f.is_required()}
            given = {n: _INVALID if n in failed else v for n, v in raw.items()}
            return self.instance_of(self.params.model_construct(**{**defaults, **given}))
        except Exception:  # any bad raw value: the source's name is the best label
            return self.name


@dataclass(frozen=True)
class ApiCall(Generic[P]):
    """What an API source's ``fetch`` receives: the run's checked parameters and resolved URLs.

    ``urls`` are keyed by ``UrlParam.key``; ``state`` holds the instance's cursors from
    the ledger (for sources declared ``stateful``); ``api_key`` the secret of the
    source's Secret block, or None.
    """

    label: str
    instance: str
    params: P
    urls: Mapping[str, str]
    state: Mapping[str, str] = field(default_factory=dict)
    api_key: str | None = None

    @property
    def url(self) -> str:
        """The source's one URL (for sources with a single ``base_url``)."""
        (only,) = self.urls.values()
        return only


@dataclass(frozen=True, kw_only=True)
class ApiSource(DeclaredSource[P]):
    """An API source: its responses are fetched, normalised into frames, then loaded as a batch.

    ``fetch`` is the source's one piece of behaviour; ``stateful`` sources get their
    cursors (``ledger.all_state``) and ``api_key_block`` names the Settings field that
    names their Secret block.
    """

    fetch: Callable[[ApiCall[Any]], Any]
    stateful: bool = False
    api_key_block: str | None = None


@dataclass(frozen=True, kw_only=True)
class ExportSource(DeclaredSource[P]):
    """A checksummed export (META.json plus Parquet files) published under ``url_template``.

    ``url_template`` is formatted with ``base_url`` and the partition values
    (``{base_url}/{network}/{processing_date}``); ``constants`` are the parameters the
    manifest must agree with; ``excluded`` the published tables deliberately not loaded.
    """

    url_template: str
    constants: tuple[str, ...] = ()
    excluded: Callable[[Settings], Collection[str]] = lambda _settings: ()


class _Invalid:
    """A parameter that failed its check: using it in an instance name fails, so the label is the source."""

    def __format__(self, spec: str) -> str:
        raise ValueError("invalid parameter")

    def __getattr__(self, name: str) -> Any:
        raise ValueError("invalid parameter")


_INVALID = _Invalid()


class _Attributes(dict[str, Any]):
    """``str.format_map`` over an object's attributes (fields and properties)."""

    def __init__(self, target: object) -> None:
        super().__init__()
        self._target = target

    def __missing__(self, key: str) -> Any:
        return getattr(self._target, key)


def check_params(source: DeclaredSource[P], raw: Mapping[str, Any]) -> P:
    """The parameters model of ``raw``; ConfigurationError with one line per failed check otherwise."""
    try:
        return source.params.model_validate(dict(raw))
    except ValidationError as error:
        failed = {str(item["loc"][0]) for item in error.errors() if item["loc"]}
        raise ConfigurationError(source.label_of(raw, failed), "; ".join(_problems(error))) from None


def _problems(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        if item["type"] == "value_error":
            problems.append(str(item["ctx"]["error"]))
        else:
            problems.append(f"expected {where} as {_lower_first(item['msg'])}, found {item.get('input')!r}")
    return problems


def _lower_first(text: str) -> str:
    text = re.sub(r"^Input should be (a |an )?", "", text)
    return text[:1].lower() + text[1:]


def resolve_urls(source: DeclaredSource[Any], label: str, params: SourceParams, settings: Settings) -> dict[str, str]:
    """Each URL parameter's value: the parameter, else ``HEADWATER_BASE_URLS[key]``, else the default; checked."""
    urls = {}
    for url in source.urls:
        value = getattr(params, url.param) or settings.base_urls.get(url.key) or url.default
        if not value:
            raise ConfigurationError(
                label, f"expected a {url.param} (--{url.param.replace('_', '-')} or HEADWATER_BASE_URLS), found none"
            )
        urls[url.key] = check_url(label, url.param, value, url.schemes)
    return urls


def partition_of(source: SourceSpec, params: SourceParams) -> dict[str, str | date]:
    """The batch's partition values, read from the parameters model by column name."""
    return {column: getattr(params, column) for column in source.partition_columns}


def values(params: SourceParams, names: Sequence[str]) -> dict[str, Any]:
    """The named parameters' values (e.g. an export's constants)."""
    return {name: getattr(params, name) for name in names}
