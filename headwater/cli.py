"""The command-line contract every flow module shares, and the one runner of every source's command line.

Exit 0 when the batch was loaded or was unchanged, with one summary line on stdout;
exit 2 with a one-line ``error: <reason>`` on stderr when a parameter or setting is
wrong (nothing was fetched); exit 1 with a one-line reason when the run failed, was
skipped (circuit open), was superseded, or loaded only part of the batch (``partial``).

Prefect's console log lines (run and task states, the temporary server's notice) stay
off the terminal unless ``--verbose`` (or ``HEADWATER_VERBOSE=1``) asks for them, which
also prints a failure's traceback; the same lines still reach the Prefect UI.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
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
from headwater.settings import heartbeats_requested, no_server_telemetry, request_verbose, verbose_requested
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
    if isinstance(error, BaseException) and verbose_requested():
        traceback.print_exception(error, file=sys.stderr)
    print(f"error: {' '.join(str(error).splitlines())}", file=sys.stderr)
    return code


CONSOLE_HANDLER_NAMES = ("PrefectConsoleHandler",)


def quiet_console(verbose: bool | None = None) -> None:
    """Keep Prefect's console log lines off this process's terminal from now on, unless verbose.

    Only the handlers that write to the terminal are raised above ``CRITICAL`` (or back
    to every level when verbose, so a ``--verbose`` given after an earlier call still
    counts); the API handler still sends every run's log lines to the Prefect UI. It
    lasts for the process, so the temporary server's notices at exit stay off the
    terminal too. ``verbose`` defaults to ``HEADWATER_VERBOSE`` (set by every command's
    ``--verbose``).
    """
    no_server_telemetry()
    verbose = verbose_requested() if verbose is None else verbose
    level = logging.NOTSET if verbose else logging.CRITICAL + 1
    for logger in _console_loggers():
        for handler in logger.handlers:
            if type(handler).__name__ in CONSOLE_HANDLER_NAMES:
                handler.setLevel(level)


def _console_loggers() -> list[logging.Logger]:
    """The loggers Prefect's logging configuration gives a console handler (the root among them)."""
    from prefect.logging import configuration  # noqa: PLC0415 - configure (once) before looking

    if not configuration.PROCESS_LOGGING_CONFIG:
        configuration.setup_logging()
    names = ("prefect", "prefect.flow_runs", "prefect.task_runs", "uvicorn", "fastapi")
    return [logging.getLogger(), *(logging.getLogger(name) for name in names)]


@contextmanager
def local_runs() -> Iterator[None]:
    """Flow runs started in this process send no Prefect heartbeats, unless the environment asks for them.

    It also keeps Prefect's console log lines off the terminal (:func:`quiet_console`).

    Prefect's heartbeat thread sleeps in one-second steps and every flow run joins it
    on exit: measured here, a trivial flow run takes 1.07 s with heartbeats and 0.08 s
    without (``bench/demo_rerun.py`` shows it on the demo's 12 runs). Heartbeats serve
    the zombie automation of deployment runs, whose workers set their frequency
    (``prefect.yaml``, job variables) and start runs without this module's commands; a
    run started from a command line is watched by the ledger's lease instead.
    """
    quiet_console()
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
    summary = summary_line(outcome)
    if outcome.status in SUCCESSES and not outcome.error:
        print(summary)
        return 0
    if outcome.rows_by_table:  # a partial batch: what did load
        print(summary)
    return report_error(outcome.error or summary)


def summary_line(outcome: BatchOutcome) -> str:
    """One line saying what a run did.

    ``sot-ethereum ethereum/2026-11-22: loaded 90,000 rows (4 tables, 3.2 MB) in 1.6 s``
    """
    head = f"{run_label(outcome.instance, outcome.partition_key)}: {outcome.status}"
    took = f" in {outcome.duration_s:.1f} s" if outcome.duration_s else ""
    if not outcome.rows_by_table:
        return head + took
    rows = sum(outcome.rows_by_table.values())
    tables = len(outcome.rows_by_table)
    size = f", {human_bytes(outcome.bytes)}" if outcome.bytes else ""
    return f"{head} {rows:,} row{'s' if rows != 1 else ''} ({tables} table{'s' if tables != 1 else ''}{size}){took}"


def run_label(instance: str, partition_key: str) -> str:
    """The instance and the parts of its partition key the name does not already say.

    ``sot-ethereum`` + ``ethereum/2026-11-22`` → ``sot-ethereum 2026-11-22``;
    ``worldbank-business`` + ``business`` → ``worldbank-business``.
    """
    named = instance.lower().replace("_", "-")
    rest = [part for part in partition_key.split("/") if part.lower().replace("_", "-") not in named]
    return " ".join([instance, "/".join(rest)]) if rest else instance


def human_bytes(size: float) -> str:
    """``3.2 MB``-style sizes (decimal units)."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def source_command(source: DeclaredSource[Any], flow: Callable[..., RunResult]) -> Callable[..., int]:
    """The ``main(argv=None)`` of a source's flow module (``python -m flows.<name>``)."""

    def main(argv: list[str] | None = None) -> int:
        return source_main(source, flow, argv)

    return main


def source_main(source: DeclaredSource[Any], flow: Callable[..., RunResult], argv: list[str] | None = None) -> int:
    """``python -m flows.<name>``: flags from the source's parameters model, then the flow; returns the exit code."""
    parser = source_parser(source)
    args = vars(parser.parse_args(argv))
    if args.pop("verbose", False):
        request_verbose()
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
    add_verbose_flag(parser)
    for name, info in source.params.model_fields.items():
        flag = flag_of(name, info)
        if is_switch(info):
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


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    """``--verbose``: Prefect's log lines on the terminal and a failure's traceback (``HEADWATER_VERBOSE=1``)."""
    parser.add_argument("--verbose", action="store_true", help="print Prefect's log lines and a failure's traceback")


def parse_command_line(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv`` with ``--verbose`` added; without it, Prefect's console lines stay off (:func:`quiet_console`)."""
    add_verbose_flag(parser)
    args = parser.parse_args(argv)
    if args.verbose:
        request_verbose()
    quiet_console()
    return args


def is_switch(info: FieldInfo) -> bool:
    """A boolean parameter: a flag without a value on the command line."""
    return _base(info.annotation) is bool


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
