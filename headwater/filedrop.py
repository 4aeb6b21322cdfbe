"""File sources declared in configuration: ``sources.yaml`` turned into a source spec, a model and a reader.

A file source is a folder (``location``, relative paths resolve against the YAML file's
folder) whose files matching ``glob`` are batches: each file is read with its declared
format into a frame with the declared column types, and goes through the shared
pipeline as its own partition, ``source_file`` (its path relative to the folder). So a
new file adds its rows, a changed file (by content) replaces exactly its own rows, an
unchanged file is recorded ``unchanged`` and loads nothing, and one file never touches
another's rows.

The pandera model of the table is generated from the declaration as Python source (the
validation cache keys on a model's source, so every declared check is in it) and
compiled under a name that ``inspect`` can read back. Nothing in a declaration is
executed: names must be identifiers and every value is written as a Python literal.
"""

from __future__ import annotations

import codecs
import datetime as dt
import hashlib
import json
import keyword
import linecache
import os
import re
import sys
import types
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import pandera.polars as pa
import polars as pl
import yaml
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from headwater.errors import ConfigurationError, SchemaViolation
from headwater.manifest import sha256_file
from headwater.settings import get_settings
from headwater.spec import SourceSpec
from headwater.tables import TableSpec

try:  # the XLSX engine polars reads with; without it reading XLSX raises ImportError, which rejects nothing
    from fastexcel import FastExcelError

    ENGINE_ERRORS: tuple[type[Exception], ...] = (FastExcelError,)
except ImportError:
    ENGINE_ERRORS = ()

"""Where the file sources are declared (until a setting names another file)."""

ON_ARRIVAL = "on_arrival"
FILE_COLUMN = "source_file"
"""The partition column every file source's table has: the file's path relative to the location."""
REJECTED_DIR = "rejected"
REPORT_SUFFIX = ".report.json"
STATE_KEY = "filedrop.seen"
"""Ledger ``source_state`` key of the watcher: what it last saw of each file (size, mtime, SHA-256)."""
EXAMPLES = 3

ColumnType = Literal["string", "int", "float", "bool", "date", "datetime"]
NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
COLUMN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
TRUE_TEXT = frozenset({"true", "1", "yes"})
FALSE_TEXT = frozenset({"false", "0", "no"})
POLARS_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "int": pl.Int64(),
    "float": pl.Float64(),
    "bool": pl.Boolean(),
    "date": pl.Date(),
    "datetime": pl.Datetime("ms", "UTC"),
}
ANNOTATIONS = {
    "string": "str",
    "int": "int",
    "float": "float",
    "bool": "bool",
    "date": "datetime.date",
    "datetime": 'Annotated[pl.Datetime, "ms", "UTC"]',
}
BOUNDS = ("ge", "gt", "le", "lt")


# --- the declaration -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnChecks:
    """A column's checks: bounds (``ge``/``gt``/``le``/``lt``), allowed values, a regex."""

    ge: Any = None
    gt: Any = None
    le: Any = None
    lt: Any = None
    allowed: tuple[Any, ...] | None = None
    pattern: str | None = None


def _bound(kind: str, value: Any) -> Any:
    """A range bound as the column type's Python value; ValueError when it is not one."""
    if kind in ("int", "float") and isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if kind == "date" and isinstance(value, dt.date | str) and not isinstance(value, dt.datetime):
        return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)
    if kind == "datetime" and isinstance(value, dt.datetime | str):
        stamp = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
        return stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp.astimezone(dt.UTC)
    raise ValueError(f"expected a {kind} bound, found {value!r}")


def parse_checks(value: Any, kind: str | None) -> ColumnChecks:
    """The ``check`` mapping of a column of type ``kind``: ``range``, ``allowed``, ``pattern``.

    ``range`` is ``[min, max]`` (inclusive, either may be null) or a mapping of
    ``ge``/``gt``/``le``/``lt``; it takes int, float, date and datetime columns.
    ``allowed`` is a non-empty list of values (string, int, float columns); ``pattern`` a
    regular expression every value must match from its start (string columns).
    """
    if value is None:
        return ColumnChecks()
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a mapping of checks (range, allowed, pattern), found {value!r}")
    unknown = [name for name in value if name not in ("range", "allowed", "pattern")]
    if unknown:
        raise ValueError(f"unknown check {unknown[0]!r} (expected range, allowed or pattern)")
    found: dict[str, Any] = {}
    if "range" in value:
        if kind not in ("int", "float", "date", "datetime"):
            raise ValueError(f"range needs an int, float, date or datetime column, found {kind}")
        bounds = value["range"]
        if isinstance(bounds, list | tuple) and len(bounds) == 2:
            bounds = {"ge": bounds[0], "le": bounds[1]}
        if not isinstance(bounds, Mapping) or not set(bounds) <= set(BOUNDS):
            raise ValueError(f"expected range as [min, max] or a mapping of ge/gt/le/lt, found {value['range']!r}")
        found.update({k: _bound(kind, v) for k, v in bounds.items() if v is not None})
        if not found:
            raise ValueError("expected range to bound at least one side, found [null, null]")
    if "allowed" in value:
        allowed = value["allowed"]
        if kind not in ("string", "int", "float"):
            raise ValueError(f"allowed needs a string, int or float column, found {kind}")
        if not isinstance(allowed, list) or not allowed:
            raise ValueError(f"expected allowed as a non-empty list, found {allowed!r}")
        python_type = {"string": str, "int": int, "float": int | float}[kind]
        wrong = [v for v in allowed if not isinstance(v, python_type) or isinstance(v, bool)]
        if wrong:
            raise ValueError(f"expected allowed values of type {kind}, found {wrong[0]!r}")
        found["allowed"] = tuple(allowed)
    if "pattern" in value:
        pattern = value["pattern"]
        if kind != "string":
            raise ValueError(f"pattern needs a string column, found {kind}")
        try:
            re.compile(pattern)
        except (re.error, TypeError) as error:
            raise ValueError(f"expected pattern as a regular expression, found {pattern!r} ({error})") from None
        found["pattern"] = pattern
    return ColumnChecks(**found)


class ColumnDecl(BaseModel):
    """One declared column: its type, whether it may be empty, how a date is written, its checks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: ColumnType
    nullable: bool = False
    format: str | None = None
    check: ColumnChecks = ColumnChecks()

    @field_validator("format")
    @classmethod
    def _format_for_dates(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("type") not in ("date", "datetime"):
            raise ValueError("only date and datetime columns take a format (strftime, e.g. %d/%m/%Y)")
        return value

    @field_validator("check", mode="before")
    @classmethod
    def _checks(cls, value: Any, info: ValidationInfo) -> ColumnChecks:
        return parse_checks(value, info.data.get("type"))


class CsvFormat(BaseModel):
    """Delimited text: one header line, then one row per line."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["csv"]
    delimiter: str = ","
    encoding: str = "utf-8"
    decimal: Literal[".", ","] = "."

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str) -> str:
        if len(value) != 1:
            raise ValueError(f"expected a single character, found {value!r}")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value


class XlsxFormat(BaseModel):
    """An Excel workbook: one sheet (the first when none is named), header in the first row."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["xlsx"]
    sheet: str | None = None


class ParquetFormat(BaseModel):
    """A Parquet file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["parquet"]


class JsonlFormat(BaseModel):
    """JSON lines: one object per line, its keys the columns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["jsonl"]


FileFormat = Annotated[CsvFormat | XlsxFormat | ParquetFormat | JsonlFormat, Field(discriminator="type")]
FORMAT_TAGS = ("csv", "xlsx", "parquet", "jsonl")


class FileSource(BaseModel):
    """A file source: where its files are, how to read them, their columns and where they load."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME.pattern, max_length=48)
    description: str = ""
    location: str
    glob: str
    format: FileFormat
    columns: dict[str, ColumnDecl] = Field(min_length=1)
    key: tuple[str, ...] = Field(min_length=1)
    partition: tuple[str, ...] = ()
    database: str = Field(pattern=IDENTIFIER.pattern)
    table: str = Field(pattern=IDENTIFIER.pattern)
    schedule: str

    @field_validator("location")
    @classmethod
    def _resolve_location(cls, value: str, info: ValidationInfo) -> str:
        if re.match(r"^[a-z][a-z0-9+.-]*://", value):
            raise ValueError(f"expected a local folder, found {value!r} (http(s) locations are not supported yet)")
        base = Path((info.context or {}).get("base", "."))
        return str((base / Path(value).expanduser()).resolve())

    @field_validator("glob")
    @classmethod
    def _file_name_glob(cls, value: str) -> str:
        if not value or "/" in value or "\\" in value or value in (".", ".."):
            raise ValueError(
                f"expected a file name pattern (e.g. *.csv; files directly in the location), found {value!r}"
            )
        return value

    @field_validator("format", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value

    @field_validator("columns")
    @classmethod
    def _column_names(cls, value: dict[str, ColumnDecl]) -> dict[str, ColumnDecl]:
        for name in value:
            if not COLUMN.match(name) or keyword.iskeyword(name):
                raise ValueError(f"{name!r} is not a column name (a letter, then letters, digits or _)")
            if name == FILE_COLUMN or hasattr(pa.DataFrameModel, name):
                raise ValueError(f"column name {name!r} is reserved")
        return value

    @field_validator("key", "partition")
    @classmethod
    def _declared_columns(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        columns = info.data.get("columns")
        if columns is not None:
            unknown = [c for c in value if c not in columns]
            if unknown:
                raise ValueError(f"unknown column {unknown[0]!r} (declared: {', '.join(columns)})")
        if len(set(value)) != len(value):
            raise ValueError(f"a column is named twice in {list(value)}")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron_or_on_arrival(cls, value: str) -> str:
        if value != ON_ARRIVAL and not croniter.is_valid(value):
            raise ValueError(f"expected a cron expression (e.g. '0 6 * * 1') or {ON_ARRIVAL!r}, found {value!r}")
        return value

    @property
    def folder(self) -> Path:
        """The folder the files are dropped into."""
        return Path(self.location)

    @property
    def on_arrival(self) -> bool:
        """Whether new files are ingested as they arrive (else on the cron schedule)."""
        return self.schedule == ON_ARRIVAL


class FileDropConfig(BaseModel):
    """The whole ``sources.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file_sources: list[FileSource] = []


def config_path(path: str | Path | None = None) -> Path:
    """The configuration file: ``path`` when given, else ``HEADWATER_FILE_SOURCES_PATH`` (``./sources.yaml``)."""
    return Path(path).expanduser().resolve() if path else get_settings().file_sources_path


def _problem(error: ValidationError, raw: Any) -> str:
    """The first problem of a validation error as one line naming the entry and the field."""
    problems = error.errors()
    first = problems[0]
    loc = list(first["loc"])
    where = ""
    if loc[:1] == ["file_sources"] and len(loc) >= 2 and isinstance(loc[1], int):
        entry = raw["file_sources"][loc[1]]
        name = entry.get("name") if isinstance(entry, dict) else None
        where = f"file source {name!r}: " if isinstance(name, str) else f"file source #{loc[1] + 1}: "
        loc = loc[2:]
    if loc[:1] == ["format"] and len(loc) > 1 and loc[1] in FORMAT_TAGS:
        del loc[1]
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "missing"
    field = ".".join(str(part) for part in loc) or "(top level)"
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    return f"{where}{field}: {message}{more}"


def load_config(path: str | Path | None = None) -> dict[str, FileSource]:
    """Every declared file source by name; ConfigurationError with one line naming the entry and field."""
    file = config_path(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(file.name, f"not found at {file}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise ConfigurationError(file.name, f"not valid YAML: {problem}{at}") from None
    raw = {} if raw is None else raw
    try:
        config = FileDropConfig.model_validate(raw, context={"base": file.parent})
    except ValidationError as error:
        raise ConfigurationError(file.name, _problem(error, raw)) from None
    sources: dict[str, FileSource] = {}
    tables: dict[tuple[str, str], str] = {}
    for source in config.file_sources:
        if source.name in sources:
            raise ConfigurationError(file.name, f"file source {source.name!r}: name: declared twice")
        other = tables.setdefault((source.database, source.table), source.name)
        if other != source.name:
            raise ConfigurationError(
                file.name,
                f"file source {source.name!r}: table: {source.database}.{source.table} is already loaded "
                f"by file source {other!r}",
            )
        sources[source.name] = source
    return sources


def get_source(name: str, path: str | Path | None = None) -> FileSource:
    """The file source ``name``; ConfigurationError naming the declared ones when there is none."""
    sources = load_config(path)
    if name not in sources:
        declared = ", ".join(sorted(sources)) or "none"
        raise ConfigurationError(config_path(path).name, f"no file source {name!r} (declared: {declared})")
    return sources[name]


# --- the table: model and specs --------------------------------------------------------------------------------


def _class_name(table: str) -> str:
    return "".join(part.capitalize() for part in table.split("_") if part) or "Table"


def _field(column: ColumnDecl) -> str:
    """The ``pa.Field(...)`` arguments of a column, every value a Python literal."""
    arguments = ["nullable=True"] if column.nullable else []
    checks = column.check
    arguments += [f"{bound}={getattr(checks, bound)!r}" for bound in BOUNDS if getattr(checks, bound) is not None]
    if checks.allowed is not None:
        arguments.append(f"isin={list(checks.allowed)!r}")
    if checks.pattern is not None:
        arguments.append(f"str_matches={checks.pattern!r}")
    return f"pa.Field({', '.join(arguments)})"


def render_model(source: FileSource) -> str:
    """The Python source of the table's pandera model (polars backend), generated from the declaration."""
    doc = f"``{source.database}.{source.table}``: file source {source.name!r}. {source.description}".strip()
    lines = [
        "import datetime",
        "from typing import Annotated",
        "",
        "import pandera.polars as pa",
        "import polars as pl",
        "",
        "",
        f"class {_class_name(source.table)}(pa.DataFrameModel):",
        f"    {doc!r}",
        "",
        f"    {FILE_COLUMN}: str = pa.Field(str_length={{'min_value': 1}})",
    ]
    lines += [f"    {name}: {ANNOTATIONS[c.type]} = {_field(c)}" for name, c in source.columns.items()]
    lines += ["", "    class Config:", "        strict = True", "        coerce = True"]
    lines.append(f"        unique = {list(source.key)!r}")
    return "\n".join(lines) + "\n"


_MODELS: dict[str, type[pa.DataFrameModel]] = {}


def build_model(source: FileSource) -> type[pa.DataFrameModel]:
    """The table's pandera model, compiled from :func:`render_model` (one per distinct source text).

    The module it lives in is registered in ``sys.modules`` and its text in ``linecache``,
    so ``inspect.getsource`` returns the generated source, which the validation cache keys on.
    """
    text = render_model(source)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    if digest not in _MODELS:
        name = f"headwater_filedrop_{source.name.replace('-', '_')}_{digest}"
        filename = f"<file source {source.name} {digest}>"
        linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
        module = types.ModuleType(name, f"Generated model of file source {source.name!r}.")
        module.__file__ = filename
        sys.modules[name] = module
        exec(compile(text, filename, "exec"), module.__dict__)  # noqa: S102 - text is rendered from literals only
        _MODELS[digest] = getattr(module, _class_name(source.table))
    return _MODELS[digest]


def table_spec(source: FileSource) -> TableSpec:
    """The table of a file source: its generated model, its key, sorted by partition columns then key."""
    order = tuple(dict.fromkeys((*source.partition, *source.key)))
    return TableSpec(source.table, build_model(source), key=source.key, order_by=order)


def source_spec(source: FileSource) -> SourceSpec:
    """The source spec: one table, partitioned by file; every run carries its own file (catch-up ``all``)."""
    return SourceSpec(
        name=source.name,
        tables={source.table: table_spec(source)},
        partition_columns=(FILE_COLUMN,),
        catch_up="all",
    )


# --- files in the folder ---------------------------------------------------------------------------------------


def list_files(source: FileSource) -> list[Path]:
    """The files directly in the folder matching the glob, sorted (so never those in ``rejected/``); hidden skipped."""
    folder = source.folder
    if not folder.is_dir():
        return []
    found = [
        path
        for path in folder.glob(source.glob)
        if path.is_file() and not path.name.endswith(REPORT_SUFFIX) and not path.name.startswith(".")
    ]
    return sorted(found)


def relative_name(source: FileSource, path: Path) -> str:
    """A file's path relative to the folder (POSIX separators): its partition and its name in reports."""
    return path.resolve().relative_to(source.folder).as_posix()


def resolve_file(source: FileSource, file: str) -> Path:
    """The file a run is asked for (absolute, or relative to the folder); ConfigurationError when unusable."""
    candidate = Path(file).expanduser()
    path = (candidate if candidate.is_absolute() else source.folder / candidate).resolve()
    if not path.is_relative_to(source.folder):
        raise ConfigurationError(source.name, f"expected a file inside {source.folder}, found {file!r}")
    if not path.is_file():
        raise ConfigurationError(source.name, f"expected an existing file, found no file at {path}")
    return path


# --- reading a file into the declared types --------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """One failing check of a file: where, what, how often, and a few offending values."""

    column: str
    check: str
    count: int
    examples: tuple[str, ...] = ()

    def __str__(self) -> str:
        shown = f", e.g. {', '.join(repr(e) for e in self.examples)}" if self.examples else ""
        return f"{self.column}: {self.check} failed for {self.count} row(s){shown}"


class FileRejected(SchemaViolation):
    """A file that cannot become the declared table (unreadable, wrong columns, values of the wrong type)."""

    def __init__(self, source: str, message: str, failures: Iterable[Failure] = ()) -> None:
        self.failures = tuple(failures)
        detail = "; ".join(str(f) for f in self.failures)
        super().__init__(source, f"{message}: {detail}" if detail else message)


def _read_jsonl(path: Path, label: str) -> pl.DataFrame:
    """A JSON-lines file as text columns (numbers and booleans as JSON writes them)."""
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                raise FileRejected(
                    label, f"line {number}: expected a JSON object, found invalid JSON ({error})"
                ) from None
            if not isinstance(row, dict):
                raise FileRejected(label, f"line {number}: expected a JSON object, found {type(row).__name__}")
            rows.append(row)
    names = list(dict.fromkeys(name for row in rows for name in row))

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) or value is None else json.dumps(value)

    return pl.DataFrame({n: [text(row.get(n)) for row in rows] for n in names}, schema=dict.fromkeys(names, pl.String))


def read_raw(source: FileSource, path: Path, label: str) -> pl.DataFrame:
    """The file's rows as read by its format (CSV, JSON lines and XLSX as text; Parquet typed)."""
    fmt = source.format
    unreadable: tuple[type[Exception], ...] = (pl.exceptions.PolarsError, UnicodeError, ValueError, *ENGINE_ERRORS)
    try:
        if isinstance(fmt, CsvFormat):
            encoding = "utf8" if codecs.lookup(fmt.encoding).name == "utf-8" else fmt.encoding
            frame = pl.read_csv(path, separator=fmt.delimiter, encoding=encoding, infer_schema=False)
        elif isinstance(fmt, XlsxFormat):
            frame = pl.read_excel(
                path, sheet_name=fmt.sheet, sheet_id=None if fmt.sheet else 1, infer_schema_length=None
            )
        elif isinstance(fmt, ParquetFormat):
            frame = pl.read_parquet(path)
        else:
            return _read_jsonl(path, label)
    except unreadable as error:
        raise FileRejected(label, f"unreadable as {fmt.type}: {' '.join(str(error).split())[:300]}") from None
    return frame.rename({frame.columns[0]: frame.columns[0].lstrip("\ufeff")}) if frame.columns else frame


def _parse_text(text: pl.Expr, column: ColumnDecl, decimal: str) -> pl.Expr:
    """A text column converted to the declared type; a value that does not parse becomes null."""
    text = text.str.strip_chars()
    if column.type == "string":
        return text
    if column.type == "int":
        return text.cast(pl.Int64, strict=False)
    if column.type == "float":
        return (text.str.replace(",", ".", literal=True) if decimal == "," else text).cast(pl.Float64, strict=False)
    if column.type == "bool":
        lowered = text.str.to_lowercase()
        return (
            pl.when(lowered.is_in(list(TRUE_TEXT)))
            .then(True)
            .when(lowered.is_in(list(FALSE_TEXT)))
            .then(False)
            .otherwise(None)
        )
    if column.type == "date":
        return text.str.to_date(column.format or "%Y-%m-%d", strict=False)
    return text.str.to_datetime(column.format, time_unit="ms", time_zone="UTC", strict=False)


def _convert(series: pl.Series, column: ColumnDecl, decimal: str) -> pl.Series:
    """One column in its declared type (nulls where a value does not convert)."""
    target = POLARS_TYPES[column.type]
    frame = series.to_frame("value")
    if series.dtype == pl.String:
        empty_is_null = pl.when(pl.col("value").str.strip_chars() == "").then(None).otherwise(pl.col("value"))
        converted = frame.select(_parse_text(empty_is_null, column, decimal).alias("value")).to_series()
    elif column.type == "int" and series.dtype.is_float():
        whole = frame.select(pl.when(pl.col("value") == pl.col("value").floor()).then(pl.col("value"))).to_series()
        converted = whole.cast(pl.Int64, strict=False)
    elif column.type == "datetime" and isinstance(series.dtype, pl.Datetime) and series.dtype.time_zone is None:
        converted = series.dt.replace_time_zone("UTC")
    else:
        converted = series.cast(target, strict=False)
    return converted.cast(target).alias(series.name)


def read_file(source: FileSource, path: Path, label: str) -> pl.DataFrame:
    """Read one file into the table's frame: ``source_file`` then the declared columns, in the declared types.

    Raises FileRejected when the file is unreadable, lacks a declared column, has an
    undeclared one, has values that are not of the declared type (every such column
    reported with counts and examples), or holds more than one value of a partition column.
    """
    raw = read_raw(source, path, label)
    missing = [c for c in source.columns if c not in raw.columns]
    extra = [c for c in raw.columns if c not in source.columns]
    if missing or extra:
        found = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"undeclared {', '.join(extra)}" if extra else "",
            )
            if part
        )
        raise FileRejected(label, f"expected the declared columns ({', '.join(source.columns)}), found {found}")
    decimal = source.format.decimal if isinstance(source.format, CsvFormat) else "."
    columns: dict[str, pl.Series] = {}
    failures: list[Failure] = []
    for name, column in source.columns.items():
        original = raw.get_column(name)
        converted = _convert(original, column, decimal)
        bad = original.is_not_null() & converted.is_null()
        if original.dtype == pl.String:
            bad = bad & (original.str.strip_chars() != "")
        if bad.any():
            examples = original.filter(bad).cast(pl.String).head(EXAMPLES).to_list()
            failures.append(Failure(name, f"type {column.type}", int(bad.sum()), tuple(examples)))
        columns[name] = converted
    if failures:
        raise FileRejected(label, f"{len(failures)} column(s) with values not of the declared type", failures)
    frame = pl.DataFrame(columns).with_columns(pl.lit(relative_name(source, path)).alias(FILE_COLUMN))
    for name in source.partition:
        values = frame.get_column(name).unique()
        if values.len() > 1:
            shown = tuple(str(v) for v in values.sort().head(EXAMPLES).to_list())
            failures.append(Failure(name, "one value per file", values.len(), shown))
    if failures:
        raise FileRejected(label, "a file must hold one value of each partition column", failures)
    return frame.select(FILE_COLUMN, *source.columns)


# --- rejected files --------------------------------------------------------------------------------------------


def reject_file(path: Path, report: Mapping[str, Any]) -> Path:
    """Move a file into ``rejected/`` beside it and write ``<file>.report.json`` next to it; returns the new path.

    A file of the same name rejected before is replaced, with its report.
    """
    folder = path.parent / REJECTED_DIR
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    os.replace(path, target)
    report_path = folder / f"{path.name}{REPORT_SUFFIX}"
    temporary = report_path.with_name(f".{report_path.name}.tmp")
    temporary.write_text(json.dumps(dict(report), indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(temporary, report_path)
    return target


# --- the watcher's view of a folder ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SeenFile:
    """What the watcher last saw of a file: size and modification time (cheap), and its SHA-256."""

    bytes: int
    mtime_ns: int
    sha256: str


@dataclass(frozen=True)
class Arrival:
    """A new or changed file (by content) of a source."""

    source: str
    path: str
    sha256: str
    bytes: int


def parse_seen(text: str | None) -> dict[str, SeenFile]:
    """The watcher's state of a source, as stored in the ledger (JSON; empty when absent)."""
    return {path: SeenFile(**seen) for path, seen in (json.loads(text) if text else {}).items()}


def dump_seen(seen: Mapping[str, SeenFile]) -> str:
    """The watcher's state of a source as stored in the ledger."""
    return json.dumps({path: asdict(s) for path, s in sorted(seen.items())}, separators=(",", ":"))


def scan_folder(
    source: FileSource, seen: Mapping[str, SeenFile], settle_s: float, now: float
) -> tuple[list[Arrival], dict[str, SeenFile]]:
    """The files that arrived or changed since ``seen``, and the new state.

    A file whose size and mtime are as seen is not read again; otherwise it is hashed and
    is an arrival only when its content differs (a touched or re-copied identical file is
    not). A file modified within the last ``settle_s`` seconds is left for the next scan
    (it may still be being written). Files no longer in the folder (loaded and removed,
    or rejected) drop out of the state, so dropping one again is an arrival again.
    """
    arrivals: list[Arrival] = []
    state: dict[str, SeenFile] = {}
    for path in list_files(source):
        name = relative_name(source, path)
        stat = path.stat()
        before = seen.get(name)
        if now - stat.st_mtime < settle_s:
            if before is not None:
                state[name] = before
            continue
        if before is not None and (before.bytes, before.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            state[name] = before
            continue
        digest = sha256_file(path)
        state[name] = SeenFile(stat.st_size, stat.st_mtime_ns, digest)
        if before is None or before.sha256 != digest:
            arrivals.append(Arrival(source.name, name, digest, stat.st_size))
    return arrivals, state
