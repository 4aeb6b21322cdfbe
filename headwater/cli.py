"""The command-line contract every flow module shares, and the one runner of every source's command line.

Exit 0 when the batch was loaded or was unchanged; exit 2 with a one-line
``error: <reason>`` on stderr when a parameter or setting is wrong (nothing was
fetched); exit 1 with a one-line reason when the run failed, was skipped (circuit
open), was superseded, or loaded only part of the batch (``partial``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from prefect.exceptions import ParameterTypeError
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from pydantic.fields import FieldInfo

from headwater.errors import ConfigurationError
from headwater.ledger import SUCCESSES
from headwater.outcome import BatchOutcome, RunResult
from headwater.params import iso_date
from headwater.settings import heartbeats_requested
from headwater.spec import DeclaredSource

EXIT_FAILED = 1
EXIT_CONFIGURATION = 2


def report_error(error: BaseException | str, code: int = EXIT_FAILED) -> int:
    """Print ``error: <reason>`` as one line on stderr and return the exit code.

    An exception's code is 2 for a configuration error (a bad parameter or setting),
    else ``code``.
    """
    if isinstance(error, ConfigurationError | ParameterTypeError):
        code = EXIT_CONFIGURATION
    print(f"error: {' '.join(str(error).splitlines())}", file=sys.stderr)
    return code


@contextmanager
def local_runs() -> Iterator[None]:
    """Flow runs started in this process send no Prefect heartbeats, unless the environment asks for them.

    Prefect's heartbeat thread sleeps in one-second steps and every flow run joins it
    on exit: measured here, a trivial flow run takes 1.07 s with heartbeats and 0.08 s
    without (``bench/demo_rerun.py`` shows it on the demo's 12 runs). Heartbeats serve
    the zombie automation of deployment runs, whose workers set their frequency
    (``prefect.yaml``, job variables) and start runs without this module's commands; a
    run started from a command line is watched by the ledger's lease instead.
    """
    if heartbeats_requested():
        yield
        return
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def run_flow_cli(call: Callable[[], RunResult]) -> int:
    """Run a flow call (as a local run: :func:`local_runs`) and turn its outcome into the exit code and the report."""
    try:
        with local_runs():
            outcome = call()
    except Exception as error:  # the one-line reason is the contract; the traceback is in the logs
        return report_error(error)
    if not isinstance(outcome, BatchOutcome):  # a deployment run superseded by a newer one
        return report_error(str(outcome.message))
    summary = f"{outcome.instance} {outcome.partition_key}: {outcome.status} {outcome.rows_by_table}"
    if outcome.status in SUCCESSES and not outcome.error:
        print(summary)
        return 0
    if outcome.rows_by_table:  # a partial batch: what did load
        print(summary)
    return report_error(outcome.error or summary)


def source_command(source: DeclaredSource[Any], flow: Callable[..., RunResult]) -> Callable[..., int]:
    """The ``main(argv=None)`` of a source's flow module (``python -m flows.<name>``)."""

    def main(argv: list[str] | None = None) -> int:
        return source_main(source, flow, argv)

    return main


def source_main(source: DeclaredSource[Any], flow: Callable[..., RunResult], argv: list[str] | None = None) -> int:
    """``python -m flows.<name>``: flags from the source's parameters model, then the flow; returns the exit code."""
    parser = source_parser(source)
    args = vars(parser.parse_args(argv))
    given: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name, info in source.params.model_fields.items():
        text = args.get(name)
        if text is None or text is False:
            continue
        try:
            given[name] = from_text(flag_of(name, info), info.annotation, text)
        except ValueError as error:
            given[name], problems[name] = text, str(error)
    if problems:
        label = source.label_of(given, failed=problems)
        return report_error(ConfigurationError(label, "; ".join(problems.values())))
    return run_flow_cli(lambda: flow(**given))


def source_parser(source: DeclaredSource[Any]) -> argparse.ArgumentParser:
    """The command line of a declared source: one flag per parameter, described by the model."""
    parser = argparse.ArgumentParser(prog=f"python -m flows.{source.name}", description=source.summary)
    for name, info in source.params.model_fields.items():
        flag = flag_of(name, info)
        if _base(info.annotation) is bool:
            parser.add_argument(flag, dest=name, action="store_true", help=info.description)
            continue
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        shown = f" (default {default})" if default not in (None, False) else ""
        parser.add_argument(
            flag,
            dest=name,
            required=info.is_required(),
            default=None,
            metavar=_metavar(info.annotation),
            help=f"{info.description or ''}{shown}",
        )
    return parser


def flag_of(name: str, info: FieldInfo) -> str:
    """A parameter's flag: ``json_schema_extra["flag"]`` if given, else ``--<name-with-dashes>``."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return str(extra.get("flag") or f"--{name.replace('_', '-')}")


def from_text(flag: str, annotation: Any, text: str) -> Any:
    """A flag's text as the parameter's type: lists comma-separated, dates ISO, lists of objects JSON."""
    base = _base(annotation)
    if get_origin(base) is list:
        (item,) = get_args(base)
        if item is int:
            try:
                return [int(v) for v in text.split(",")]
            except ValueError:
                raise ValueError(f"expected {flag} as comma-separated integers, found {text!r}") from None
        if item is str:
            return [v.strip() for v in text.split(",")]
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, list):
            raise ValueError(f"expected {flag} as a JSON list, found {text[:200]!r}")
        return value
    if base is date:
        return iso_date(flag, text)
    if base in (int, float):
        try:
            return base(text)
        except ValueError:
            raise ValueError(
                f"expected {flag} as {'an integer' if base is int else 'a number'}, found {text!r}"
            ) from None
    return text


def _base(annotation: Any) -> Any:
    """``X`` of ``X | None`` and of ``Annotated[X, …]``."""
    if get_origin(annotation) in (Union, UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        annotation = inner[0] if len(inner) == 1 else annotation
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _metavar(annotation: Any) -> str:
    base = _base(annotation)
    if get_origin(base) is list:
        return "JSON" if get_args(base)[0] not in (int, str) else "A,B,…"
    return {date: "YYYY-MM-DD", int: "N", float: "X"}.get(base, "TEXT")
