"""``ingestion.yaml``: the catalog ingestors, in the legacy discovery node's format, validated.

::

    ingestion:
      - name: "acme-corp"
        source_type: "local"          # local (a path) or remote (an http(s) URL)
        registry: "samples/acme-solutions/brand-registory.json"
        feed_path: "samples/acme-solutions/feed/feed.json"
        schedule: "0 */4 * * *"       # cron, UTC

Relative local paths resolve against the file's folder. An unknown key, a bad cron, a
bad name or a duplicate name is a one-line ConfigurationError naming the entry.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from croniter import croniter
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic_core import ErrorDetails

from headwater.errors import ConfigurationError
from headwater.params import check_url

NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
WHERE = "ingestion.yaml"


class Ingestor(BaseModel):
    """One catalog ingestor: where its registry and feed are, and when it runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source_type: Literal["local", "remote"]
    registry: str | None = None
    feed_path: str | None = None
    schedule: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(f"expected a name like acme-corp (a-z, 0-9, '-'), found {value!r}")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(f"expected a cron schedule like '0 */4 * * *', found {value!r}")
        return value

    @property
    def instance(self) -> str:
        """The ledger instance and deployment name: ``catalog-<name>``."""
        return f"catalog-{self.name}"

    def location(self, relative: str, base: Path) -> str:
        """A registry or feed location: an absolute path (local, against ``base``) or a checked URL (remote)."""
        if self.source_type == "remote":
            return check_url(self.instance, "the location", relative)
        path = Path(relative).expanduser()
        return str(path if path.is_absolute() else (base / path).resolve())


class IngestionConfig(BaseModel):
    """The whole file: a list of ingestors with unique names."""

    model_config = ConfigDict(extra="forbid")

    ingestion: list[Ingestor]


def load_ingestion(path: Path) -> dict[str, Ingestor]:
    """The ingestors of ``path`` by name; ConfigurationError with one line naming the bad entry."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigurationError(WHERE, f"expected a readable YAML file at {path}, found {error}") from None
    entries = document.get("ingestion") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ConfigurationError(WHERE, f"expected an 'ingestion:' list in {path}, found {str(document)[:120]!r}")
    ingestors: dict[str, Ingestor] = {}
    for position, entry in enumerate(entries, start=1):
        label = entry.get("name", f"entry {position}") if isinstance(entry, dict) else f"entry {position}"
        try:
            ingestor = Ingestor.model_validate(entry)
        except ValidationError as error:
            problem = "; ".join(_problem(item) for item in error.errors())
            raise ConfigurationError(f"{WHERE} {label}", problem) from None
        if ingestor.name in ingestors:
            raise ConfigurationError(f"{WHERE} {label}", f"expected a unique name, found {ingestor.name!r} twice")
        if not (ingestor.registry or ingestor.feed_path):
            raise ConfigurationError(f"{WHERE} {label}", "expected a registry or a feed_path, found neither")
        ingestors[ingestor.name] = ingestor
    return ingestors


def _problem(item: ErrorDetails) -> str:
    where = ".".join(str(p) for p in item["loc"]) or "the entry"
    if item["type"] == "extra_forbidden":
        return f"expected keys name, source_type, registry, feed_path, schedule, found {where!r}"
    if item["type"] == "value_error":
        return str((item.get("ctx") or {}).get("error"))
    return f"expected {where}: {item['msg']}, found {item.get('input')!r}"
