"""``headwater``: the operator's one command.

    headwater run sot --param network=ethereum --param processing_date=2026-11-22
    headwater health [--json]             headwater health serve [--host] [--port]
    headwater sql "SELECT count() FROM sot.raw_alerts" [--format table|csv|json]
    headwater tables [--database sot]
    headwater serve-exports DIR [--port 8000]
    headwater demo

``headwater run <source>`` runs the same flow, with the same exit codes, as
``python -m flows.<source>`` (which stays the contract's interface): 0 loaded or
unchanged (one summary line), 1 failed (one line on stderr), 2 a bad parameter.
``--verbose`` before or after the command adds Prefect's log lines and tracebacks.
"""

from __future__ import annotations

import csv
import importlib
import json
import pkgutil
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from headwater.cli import human_bytes, quiet_console, report_error
from headwater.errors import ConfigurationError
from headwater.settings import request_verbose

app = typer.Typer(
    name="headwater",
    help="Scheduled, verified ingestion into ClickHouse: run sources, look at health and at the loaded data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
health_app = typer.Typer(help="Source health: freshness, data age, circuit, reliability.", rich_markup_mode=None)
app.add_typer(health_app, name="health")

NOT_RUNNABLE = {"factory", "health"}
"""Modules of ``flows/`` that are not run by ``headwater run`` (health has its own command)."""
SUBCOMMAND = {"catalog": ["run"]}
"""Flow modules whose command line starts with a subcommand."""


def stdout() -> Console:
    """A console on stdout; off a terminal it is wide, so piped tables are not wrapped."""
    console = Console(soft_wrap=False, highlight=False)
    return console if console.is_terminal else Console(width=160, soft_wrap=False, highlight=False)


VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Prefect's log lines and a failure's traceback on the terminal.")
]


@app.callback()
def main_options(verbose: VerboseOption = False) -> None:
    """Options of every command."""
    if verbose:
        request_verbose()
    quiet_console()


def runnable_flows() -> dict[str, str]:
    """``headwater run`` names (dashes) → flow modules: every module of ``flows/`` with a ``main``."""
    import flows  # noqa: PLC0415 - the package is only needed to list its modules

    names = sorted(m.name for m in pkgutil.iter_modules(flows.__path__) if m.name not in NOT_RUNNABLE)
    return {name.replace("_", "-"): f"flows.{name}" for name in names}


def flow_argv(module: Any, params: Sequence[str], extra: Sequence[str]) -> list[str]:
    """The module's command line for ``--param k=v`` pairs (declared sources: their own flags), then ``extra``."""
    from headwater.cli import flag_of, is_switch  # noqa: PLC0415 - keeps `headwater --help` light
    from headwater.sources import DECLARED  # noqa: PLC0415

    name_of_module = module.__name__.rsplit(".", 1)[-1]
    source = next((s for s in DECLARED if s.name == name_of_module), None)  # flows.<source name>
    fields = source.params.model_fields if source is not None else {}
    argv = list(SUBCOMMAND.get(name_of_module, []))
    for pair in params:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError("run", f"expected --param NAME=VALUE, found {pair!r}")
        name = key.strip().replace("-", "_")
        info = fields.get(name)
        flag = flag_of(name, info) if info is not None else f"--{name.replace('_', '-')}"
        if info is not None and is_switch(info):
            if value.strip().lower() in ("1", "true", "yes", "on"):
                argv.append(flag)
            continue
        argv += [flag, value]
    return argv + list(extra)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help=f"A source or flow: {', '.join(runnable_flows())}.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="A flow parameter as NAME=VALUE (repeatable).")
    ] = None,
    verbose: VerboseOption = False,
) -> None:
    """Run one flow as `python -m flows.<source>` does; flags after the source go to it unchanged."""
    if verbose:
        request_verbose()
    flows = runnable_flows()
    module_name = flows.get(source.replace("_", "-"))
    if module_name is None:
        raise typer.Exit(
            report_error(ConfigurationError("run", f"expected one of {', '.join(flows)}, found {source!r}"))
        )
    module = importlib.import_module(module_name)
    try:
        argv = flow_argv(module, param or [], ctx.args)
    except ConfigurationError as error:
        raise typer.Exit(report_error(error)) from None
    raise typer.Exit(int(module.main(argv) or 0))


@health_app.callback(invoke_without_command=True)
def health(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="The same rows as JSON.")] = False,
    reset: Annotated[str | None, typer.Option(help="Close the circuit of a source instance by hand.")] = None,
) -> None:
    """One row per source instance: state, when it last succeeded, how old its data is."""
    if ctx.invoked_subcommand is not None:
        return
    from flows.health import main as health_main  # noqa: PLC0415

    argv = ["--json"] if as_json else []
    argv += ["--reset", reset] if reset else []
    raise typer.Exit(health_main(argv))


@health_app.command("serve")
def health_serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    token_block: Annotated[
        str | None, typer.Option(help="Secret block holding the bearer token (default HEADWATER_HEALTH_TOKEN_BLOCK).")
    ] = None,
) -> None:
    """Serve data health over HTTP: GET /health/status, /health/sources, /health/sources/{name} (read-only)."""
    from flows.health import main as health_main  # noqa: PLC0415

    argv = ["serve", "--host", host, "--port", str(port)]
    raise typer.Exit(health_main(argv + (["--token-block", token_block] if token_block else [])))


class OutputFormat(StrEnum):
    """How ``headwater sql`` prints its rows."""

    TABLE = "table"
    CSV = "csv"
    JSON = "json"


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help='A read-only query, e.g. "SELECT count() FROM sot.raw_alerts".')],
    output: Annotated[OutputFormat, typer.Option("--format", "-f", help="table, csv or json.")] = OutputFormat.TABLE,
) -> None:
    """Run a read-only query on the configured warehouse (writes are refused by the engine)."""
    from commands.inventory import read_only_query  # noqa: PLC0415

    try:
        result = read_only_query(query)
    except ConfigurationError as error:
        raise typer.Exit(report_error(error)) from None
    if output is OutputFormat.CSV:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows(result.rows)
    elif output is OutputFormat.JSON:
        objects = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
        print(json.dumps(objects, default=_json_default, ensure_ascii=False))
    else:
        table = Table(*result.columns, box=None, header_style="bold", pad_edge=False)
        for row in result.rows:
            table.add_row(*(_cell(v) for v in row))
        stdout().print(table)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return "∅"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


@app.command()
def tables(
    database: Annotated[str | None, typer.Option(help="Only this database.")] = None,
) -> None:
    """Every loaded table: rows, partitions, size, its newest batch and when it was loaded."""
    from commands.inventory import table_inventory  # noqa: PLC0415
    from headwater.health import human_duration  # noqa: PLC0415

    found = table_inventory(database)
    now = datetime.now(UTC)
    table = Table("table", "rows", "partitions", "size", "last batch", "loaded (UTC)", "ago", box=None, pad_edge=False)
    for column in (1, 2, 3):
        table.columns[column].justify = "right"
    for info in found:
        loaded = info.loaded_at.replace(tzinfo=UTC) if info.loaded_at and not info.loaded_at.tzinfo else info.loaded_at
        table.add_row(
            f"{info.database}.{info.table}",
            f"{info.rows:,}",
            str(info.partitions),
            human_bytes(info.bytes_on_disk),
            info.last_batch or "-",
            loaded.strftime("%Y-%m-%d %H:%M") if loaded else "-",
            human_duration((now - loaded).total_seconds()) if loaded else "-",
        )
    console = stdout()
    console.print(table if found else "no tables loaded yet")


@app.command("serve-exports")
def serve_exports(
    folder: Annotated[Path, typer.Argument(help="Folder of exports: <network>/<date>/META.json and its files.")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free port).")] = 8000,
) -> None:
    """Serve export folders on 127.0.0.1 at /exports, for trying deployments against local data."""
    from devtools.export_server import ExportServer  # noqa: PLC0415 - a development tool, loaded on demand

    if not folder.is_dir():
        raise typer.Exit(report_error(ConfigurationError("serve-exports", f"expected a folder, found {folder}")))
    with ExportServer(folder.resolve(), port=port) as server:
        print(f"serving {folder.resolve()} at {server.base_url} (Ctrl-C to stop)", flush=True)
        _wait_forever()


def _wait_forever() -> None:
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def demo(ctx: typer.Context) -> None:
    """The quick start's demo: generated exports and recorded responses, loaded into the embedded warehouse."""
    from devtools.demo import main as demo_main  # noqa: PLC0415 - a development tool, loaded on demand

    raise typer.Exit(demo_main(list(ctx.args)))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``headwater`` console script; returns the exit code."""
    command: Callable[..., Any] = typer.main.get_command(app)
    try:
        command(args=list(argv) if argv is not None else None, prog_name="headwater", standalone_mode=True)
    except SystemExit as done:
        return int(done.code or 0) if not isinstance(done.code, str) else report_error(done.code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
