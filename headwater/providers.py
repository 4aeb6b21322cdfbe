"""One provider chain for every source that can ask more than one provider for the same data.

A source lists its providers in order of preference, each a name and a ``fetch`` that
answers a polars frame of the source's common schema (without the ``provider`` column).
``run_chain`` asks them in order: the first that answers *valid* data wins. Valid means
the fetch raised nothing, the frame is not empty, and every ``compare_value`` is a
finite number above zero, plus the provider's own ``check`` (e.g. a plausible range);
every provider that fails is recorded with its error text.

Then, so that a wrong winner does not go unnoticed, the chain asks the providers after
the winner until one more answers valid data (``compare_with="next"``, or all of them
with ``"all"``) and compares the values on the keys both answered. A relative
difference beyond ``tolerance`` is a disagreement: logged as a warning, emitted as the
Prefect event ``headwater.providers.disagree``, and returned. Providers marked
``comparable=False`` (a static fallback) never serve as a comparison. The winning frame
is loaded either way: a disagreement is a signal, not a failure.

``ChainResult.notes()`` is what the source puts into ``FetchResult.notes`` (and from
there META.json and the ledger's ``runs.notes``).

All HTTP goes through ``headwater.http`` inside each provider's fetch, so retries
(transient errors, ``Retry-After``) happen per provider before the chain moves on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any

import polars as pl
from pydantic import Field

from headwater import events
from headwater.errors import FetchError, HeadwaterError
from headwater.logs import run_logger
from headwater.params import NonNegative
from headwater.settings import get_settings

PROVIDERS_DISAGREE = "headwater.providers.disagree"
MAX_ERROR_CHARS = 500


Tolerance = Annotated[
    NonNegative | None,
    Field(description="relative difference that is a disagreement (default HEADWATER_PROVIDER_DISAGREEMENT_TOLERANCE)"),
]
"""The chain sources' ``tolerance`` parameter."""


def tolerance_of(value: float | None) -> float:
    """A run's disagreement tolerance: the parameter, else the setting."""
    return get_settings().provider_disagreement_tolerance if value is None else value


class InvalidAnswer(Exception):
    """A provider answered, but not valid data (empty, unparsable values, failed sanity check)."""


@dataclass(frozen=True)
class Provider:
    """One provider of a source: its name, how to fetch, and an optional sanity check.

    ``check(frame)`` answers a problem description or ``None`` when the frame is sane.
    """

    name: str
    fetch: Callable[[], pl.DataFrame]
    check: Callable[[pl.DataFrame], str | None] | None = None
    comparable: bool = True


@dataclass(frozen=True)
class Disagreement:
    """Two providers' values for one key, further apart than the tolerance."""

    key: tuple[Any, ...]
    provider_a: str
    value_a: float
    provider_b: str
    value_b: float

    @property
    def relative_difference(self) -> float:
        """``|a - b| / max(|a|, |b|)``."""
        return abs(self.value_a - self.value_b) / max(abs(self.value_a), abs(self.value_b))


def served_by(notes: Mapping[str, Any] | None) -> tuple[str | None, list[tuple[str, str]]]:
    """The provider that served a run's batch and ``(provider, error)`` of those that failed before it.

    Read from the run's ledger notes (``notes["providers"]``, written from :meth:`ChainResult.notes`);
    ``(None, [])`` for a source without a provider chain.
    """
    chain = (notes or {}).get("providers")
    if not isinstance(chain, Mapping) or not chain.get("winner"):
        return None, []
    failed = [
        (str(f.get("provider")), str(f.get("error"))) for f in chain.get("failures") or [] if isinstance(f, Mapping)
    ]
    return str(chain["winner"]), failed


@dataclass
class ChainResult:
    """The winning frame (with a ``provider`` column) and what happened on the way."""

    frame: pl.DataFrame
    winner: str
    failures: list[tuple[str, str]] = field(default_factory=list)
    disagreements: list[Disagreement] = field(default_factory=list)
    compared_with: list[str] = field(default_factory=list)
    compared_keys: int = 0
    comparison_failures: list[tuple[str, str]] = field(default_factory=list)
    compare_key: tuple[str, ...] = ()

    def notes(self) -> dict[str, Any]:
        """A JSON-able account of the chain for ``FetchResult.notes``."""
        return {
            "winner": self.winner,
            "failures": [{"provider": p, "error": e} for p, e in self.failures],
            "compared_with": list(self.compared_with),
            "compared_keys": self.compared_keys,
            "comparison_failures": [{"provider": p, "error": e} for p, e in self.comparison_failures],
            "disagreements": [
                {
                    "key": dict(zip(self.compare_key, (_jsonable(v) for v in d.key), strict=True)),
                    "provider_a": d.provider_a,
                    "value_a": d.value_a,
                    "provider_b": d.provider_b,
                    "value_b": d.value_b,
                    "relative_difference": round(d.relative_difference, 6),
                }
                for d in self.disagreements
            ],
        }


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime) else value


def _error_text(error: BaseException) -> str:
    if isinstance(error, HeadwaterError):
        text = error.message
    elif isinstance(error, InvalidAnswer):
        text = str(error)
    else:
        text = f"{type(error).__name__}: {error}"
    return " ".join(text.split())[:MAX_ERROR_CHARS]


def sanity_problem(
    frame: pl.DataFrame, compare_value: str, check: Callable[[pl.DataFrame], str | None] | None
) -> str | None:
    """Why ``frame`` is not valid data (``None`` when it is)."""
    if frame.is_empty():
        return "answered no rows"
    if compare_value not in frame.columns:
        return f"answered no {compare_value!r} column"
    values = frame.get_column(compare_value).cast(pl.Float64, strict=False)
    bad = [v for v in values.to_list() if v is None or not math.isfinite(v) or v <= 0]
    if bad:
        return f"answered {len(bad)} {compare_value} value(s) that are missing, not finite or not above zero"
    return check(frame) if check else None


def _attempt(provider: Provider, compare_value: str) -> pl.DataFrame:
    """The provider's frame; raises on a fetch error or a frame that fails the sanity check."""
    frame = provider.fetch()
    problem = sanity_problem(frame, compare_value, provider.check)
    if problem:
        raise InvalidAnswer(f"failed the sanity check: {problem}")
    return frame


def compare(
    winner: tuple[str, pl.DataFrame],
    other: tuple[str, pl.DataFrame],
    compare_key: Sequence[str],
    compare_value: str,
    tolerance: float,
) -> tuple[int, list[Disagreement]]:
    """How many keys both frames answered, and where their values differ beyond ``tolerance``."""
    keys = list(compare_key)
    left = winner[1].select([*keys, pl.col(compare_value).cast(pl.Float64).alias("_a")]).unique(keys, keep="first")
    right = other[1].select([*keys, pl.col(compare_value).cast(pl.Float64).alias("_b")]).unique(keys, keep="first")
    joined = left.join(right, on=keys, how="inner").sort(keys)
    found = []
    for row in joined.iter_rows(named=True):
        a, b = float(row["_a"]), float(row["_b"])
        scale = max(abs(a), abs(b))
        if scale and abs(a - b) / scale > tolerance:
            found.append(Disagreement(tuple(row[k] for k in keys), winner[0], a, other[0], b))
    return joined.height, found


def run_chain(
    source: str,
    providers: Sequence[Provider],
    *,
    compare_key: Sequence[str],
    compare_value: str,
    tolerance: float,
    compare_with: str = "next",
    instance: str | None = None,
    source_name: str | None = None,
) -> ChainResult:
    """Ask ``providers`` in order; the first valid answer wins, then check it against the next one.

    ``source`` names the batch in errors and logs; ``instance``/``source_name`` name the
    event's resource (default: ``source``). Raises FetchError naming every provider's
    failure when none answers valid data.
    """
    if compare_with not in ("next", "all", "none"):
        raise ValueError(f"compare_with must be next, all or none, found {compare_with!r}")
    logger = run_logger()
    failures: list[tuple[str, str]] = []
    winner: tuple[int, str, pl.DataFrame] | None = None
    for index, provider in enumerate(providers):
        try:
            frame = _attempt(provider, compare_value)
        except Exception as error:  # every failure is recorded; the chain moves on
            failures.append((provider.name, _error_text(error)))
            logger.warning("%s: provider %s failed: %s", source, provider.name, _error_text(error))
            continue
        winner = (index, provider.name, frame)
        break
    if winner is None:
        summary = "; ".join(f"{name}: {error}" for name, error in failures) or "no providers configured"
        raise FetchError(source, ",".join(p.name for p in providers), f"every provider failed: {summary}")
    index, name, frame = winner
    result = ChainResult(
        frame=frame.with_columns(pl.lit(name, dtype=pl.String).alias("provider")),
        winner=name,
        failures=failures,
        compare_key=tuple(compare_key),
    )
    if compare_with == "none" or not providers[index].comparable:
        return result
    for other in providers[index + 1 :]:
        if not other.comparable:
            continue
        try:
            other_frame = _attempt(other, compare_value)
        except Exception as error:  # a comparison provider that fails changes nothing but the notes
            result.comparison_failures.append((other.name, _error_text(error)))
            continue
        keys, found = compare((name, frame), (other.name, other_frame), compare_key, compare_value, tolerance)
        result.compared_with.append(other.name)
        result.compared_keys += keys
        result.disagreements.extend(found)
        if compare_with == "next":
            break
    if result.disagreements:
        notes = result.notes()["disagreements"]
        logger.warning(
            "%s: providers disagree beyond %.1f%% on %d value(s): %s",
            source,
            tolerance * 100,
            len(notes),
            "; ".join(
                f"{d['key']} {d['provider_a']}={d['value_a']} {d['provider_b']}={d['value_b']}" for d in notes[:5]
            ),
        )
        events.emit(
            PROVIDERS_DISAGREE,
            instance or source,
            source_name or source,
            winner=name,
            tolerance=tolerance,
            disagreements=notes,
        )
    return result
