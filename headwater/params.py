"""Checks of flow parameters, run before a flow's first request, and the flows' shared time limit.

Each check returns the checked value or raises ConfigurationError with one line naming
the source or instance (``label``), the parameter, what was expected and what was
found. A flow runs its checks before the circuit breaker and before any request, so
a bad parameter is never fetched, never retried, never counted by the circuit breaker
and leaves no ledger row; the command line exits 2 on it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from datetime import date
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator

from headwater.errors import ConfigurationError
from headwater.settings import Settings

FLOW_TIMEOUT_S: float = Settings().flow_timeout_s
"""``timeout_seconds`` of every flow (``HEADWATER_FLOW_TIMEOUT_S``); decorators read it once, at import."""

TASK_TIMEOUT_S: float = Settings().task_timeout_s
"""``timeout_seconds`` of every task (``HEADWATER_TASK_TIMEOUT_S``), read once, at import."""

HTTP_SCHEMES = ("http", "https")
EXPORT_SCHEMES = (*HTTP_SCHEMES, "file")
CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
T = TypeVar("T")


def check_url(label: str, name: str, url: str, schemes: Sequence[str] = HTTP_SCHEMES) -> str:
    """``url`` when it is an absolute URL of one of ``schemes``: http(s) with a host, file with an absolute path."""
    expected = ", ".join(f"{s}://" for s in schemes)
    problem = f"expected {name} as an absolute {expected} URL (with a host for http/https), found {url!r}"
    if not isinstance(url, str) or not url or any(c.isspace() for c in url):
        raise ConfigurationError(label, problem)
    try:
        parts = urlsplit(url)
        _ = parts.port  # a malformed port raises ValueError
    except ValueError as error:
        raise ConfigurationError(label, problem) from error
    if parts.scheme == "file" and "file" in schemes:
        well_formed = parts.netloc in ("", "localhost") and parts.path.startswith("/")
    else:
        well_formed = parts.scheme in schemes and bool(parts.hostname)
    if not well_formed or parts.fragment:
        raise ConfigurationError(label, problem)
    return url


def positive(name: str, value: int) -> int:
    """``value`` when it is an integer of at least 1; ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected {name} as an integer ≥ 1, found {value!r}")
    return value


def non_negative(name: str, value: float) -> float:
    """``value`` when it is a number of at least 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"expected {name} as a number ≥ 0, found {value!r}")
    return value


def positive_ints(name: str, values: Sequence[int]) -> list[int]:
    """``values`` when it is a non-empty list of integers of at least 1."""
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 1]
    if bad or not values:
        raise ValueError(f"expected {name} as a non-empty list of integers ≥ 1, found {list(values)!r}")
    return list(values)


def codes(name: str, values: Sequence[str]) -> list[str]:
    """``values`` when it is a non-empty list of codes (letters, digits, ``_ . -``)."""
    bad = [v for v in values if not isinstance(v, str) or not CODE.fullmatch(v)]
    if bad or not values:
        raise ValueError(f"expected {name} as a non-empty list of codes like BEN, found {list(values)!r}")
    return list(values)


def one_of(name: str, value: str, allowed: Collection[str]) -> str:
    """``value`` when it is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"expected {name} in {', '.join(allowed)}, found {value!r}")
    return value


def _labelled(label: str, check: Callable[..., T], *args: Any) -> T:
    try:
        return check(*args)
    except ValueError as error:
        raise ConfigurationError(label, str(error)) from None


def check_positive(label: str, name: str, value: int) -> int:
    """``value`` when it is an integer of at least 1; ConfigurationError naming ``label`` otherwise."""
    return _labelled(label, positive, name, value)


def check_non_negative(label: str, name: str, value: float) -> float:
    """``value`` when it is a number of at least 0."""
    return _labelled(label, non_negative, name, value)


def _field(check: Callable[[str, Any], Any]) -> AfterValidator:
    """A pydantic validator running ``check(field_name, value)`` on a value that is not None."""
    return AfterValidator(lambda value, info: value if value is None else check(info.field_name, value))


PositiveInt = Annotated[int, _field(positive)]
"""A parameter that is an integer ≥ 1."""
NonNegative = Annotated[float, _field(non_negative)]
"""A parameter that is a number ≥ 0."""
PositiveInts = Annotated[list[int], _field(positive_ints)]
"""A parameter that is a non-empty list of integers ≥ 1."""
Codes = Annotated[list[str], _field(codes)]
"""A parameter that is a non-empty list of codes like ``BEN``."""


def iso_date(name: str, text: str) -> date:
    """A ``YYYY-MM-DD`` date (a command-line argument); ValueError naming ``name`` otherwise."""
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected {name} as a date YYYY-MM-DD, found {text!r}") from None


def parse_date(label: str, name: str, text: str) -> date:
    """A ``YYYY-MM-DD`` date (a command-line argument); ConfigurationError naming ``label`` otherwise."""
    return _labelled(label, iso_date, name, text)
