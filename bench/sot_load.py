"""Benchmark: the SOT flow against ClickHouse's own bare load of the same Parquet files.

What is measured, per size (N rows of ``raw_alerts``, and 4N unless ``--skip-4n``):

1. An export is generated with :func:`devtools.generate.write_export`
   (``raw_alerts`` N, ``raw_features`` N/2, ``raw_clusters`` N/2, ``raw_address_labels``
   N/4, plus ``raw_money_flows`` N/2, which is published but not ingested). Generation
   runs in this (parent) process, before and outside every measurement.
2. **Flow**: the export is served on 127.0.0.1 by :class:`devtools.export_server.ExportServer`
   (from this process) and ``flows.sot.ingest_sot`` runs in a child process with a fresh
   ``HEADWATER_HOME`` and ``PREFECT_HOME``. The child starts a temporary Prefect server
   and runs a trivial warm-up flow first, so server start-up is not timed; then the
   wall clock around the ``ingest_sot(...)`` call is the flow's duration: Prefect's
   per-run orchestration, download, SHA-256, verification, validation, staging insert,
   key-uniqueness check, publish, cleanup and ledger writes included. The pipeline's
   own ``BatchOutcome.duration_s`` is reported beside it. The child's peak RSS is its
   own ``ru_maxrss`` (the Prefect server runs in its own subprocess and is not counted;
   chDB is in-process and is). A few functions the flow's tasks call are wrapped with
   timers, in the child only, to show where the time goes (overhead: microseconds);
   a thread samples the child's RSS every 50 ms to tie the peak to a phase; the CPU
   seconds of the child, of the Prefect server and of the export server are reported.
3. **Bare load**: in another child process, with a fresh chDB path, the 4 ingested
   tables are created with the flow's exact DDL (``headwater.tables.table_ddl``) and
   each is filled by ``INSERT INTO t SELECT *, '<batch id>', now64(3) FROM file('<abs
   path>', Parquet)`` from the generated files. Only the INSERTs are timed (engine
   start-up and DDL are not).

Both rows/s figures count the rows of the 4 ingested tables (2.25 N), so they compare.
The figures are single runs: on a small or shared machine, repeat and compare.
Targets (from the issue): flow rows/s ≥ 0.8 × bare rows/s, and a flow peak RSS that
does not grow in proportion to N (4N/N well below 4).

Run from the project root::

    uv run python bench/sot_load.py                   # N = 2,000,000 and 4N
    uv run python bench/sot_load.py --rows 1000000 --skip-4n
    uv run python bench/sot_load.py --json > result.json

Scratch files go to a temporary directory under ``bench/out/`` (git-ignored), removed
at the end unless ``--keep``. Progress goes to stderr; the report to stdout.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import clickhouse_connect
import psutil
import tasks.validate
from clickhouse_connect.driver.binding import format_query_value, quote_identifier
from prefect import flow, task
from prefect.testing.utilities import prefect_test_harness

import tasks.download
import tasks.load
from blocks.warehouse import ClickHouseWarehouse
from devtools.export_server import ExportServer
from devtools.generate import write_export
from flows.sot import ingest_sot
from headwater.ledger import LOADED
from headwater.settings import get_settings
from headwater.sources.sot.contract import SOT
from headwater.tables import table_ddl

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"
NETWORK = "ethereum"
DAY = date(2026, 11, 22)
TARGET_RATIO = 0.8
CHILD_TIMEOUT_S = 3 * 3600
MIB = 1024 * 1024


# --------------------------------------------------------------------------- results


@dataclass
class Phase:
    """Time spent in one instrumented function of the flow (offsets from the flow's start)."""

    name: str
    calls: int
    busy_s: float
    first_start_s: float
    last_end_s: float
    call_s: list[float] = field(default_factory=list)
    max_rss_bytes: int = 0


@dataclass
class FlowResult:
    """What the flow child measured."""

    status: str
    rows_by_table: dict[str, int]
    bytes: int
    wall_s: float
    pipeline_s: float
    rss_before_bytes: int
    peak_rss_bytes: int
    instrumented_s: float
    cpu_s: float
    server_cpu_s: float
    export_server_cpu_s: float = 0.0
    phases: list[Phase] = field(default_factory=list)


@dataclass
class BareResult:
    """What the bare-load child measured."""

    rows_by_table: dict[str, int]
    seconds_by_table: dict[str, float]
    engine_start_s: float
    peak_rss_bytes: int


@dataclass
class SizeResult:
    """One size's figures: the flow, the bare load and their ratio."""

    alerts: int
    rows: int
    export_bytes: int
    generate_s: float
    flow: FlowResult
    bare: BareResult

    @property
    def flow_rows_per_s(self) -> float:
        """Rows of the 4 ingested tables per second of the flow's wall clock."""
        return self.rows / self.flow.wall_s

    @property
    def pipeline_rows_per_s(self) -> float:
        """Rows per second of the pipeline's own ``duration_s``."""
        return self.rows / self.flow.pipeline_s

    @property
    def bare_s(self) -> float:
        """Seconds of the bare INSERTs, summed over the 4 tables."""
        return sum(self.bare.seconds_by_table.values())

    @property
    def bare_rows_per_s(self) -> float:
        """Rows of the 4 tables per second of bare INSERT."""
        return sum(self.bare.rows_by_table.values()) / self.bare_s

    @property
    def ratio(self) -> float:
        """Flow rows/s over bare rows/s (target ≥ 0.8)."""
        return self.flow_rows_per_s / self.bare_rows_per_s

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict with the derived figures."""
        return {
            **asdict(self),
            "flow_rows_per_s": self.flow_rows_per_s,
            "pipeline_rows_per_s": self.pipeline_rows_per_s,
            "bare_s": self.bare_s,
            "bare_rows_per_s": self.bare_rows_per_s,
            "ratio_flow_over_bare": self.ratio,
        }


# --------------------------------------------------------------------------- helpers


def log(message: str) -> None:
    """Progress on stderr (stdout is the report)."""
    print(f"[sot_load {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def current_rss_bytes() -> int:
    """This process's resident set size now."""
    return int(psutil.Process().memory_info().rss)


def cpu_seconds(process: psutil.Process) -> float:
    """User plus system CPU seconds of ``process`` so far."""
    times = process.cpu_times()
    return float(times.user + times.system)


def children_cpu_seconds() -> float:
    """CPU seconds so far of this process's live descendants (the Prefect server)."""
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        with suppress(psutil.Error):
            total += cpu_seconds(child)
    return total


def self_cpu_seconds() -> float:
    """CPU seconds so far of this process (every thread, chDB's included)."""
    return cpu_seconds(psutil.Process())


def ingested_tables() -> list[str]:
    """The contract tables the flow loads under default settings."""
    excluded = set(get_settings().sot_excluded_tables)
    return [t for t in SOT.tables if t not in excluded]


def child_env(home: Path, prefect_home: Path) -> dict[str, str]:
    """The environment of a child: fresh Headwater and Prefect homes, quiet logs, no analytics."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    env.update(
        HEADWATER_HOME=str(home),
        PREFECT_HOME=str(prefect_home),
        PREFECT_LOCAL_STORAGE_PATH=str(prefect_home / "results"),
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    return env


def run_child(mode: str, extra: list[str], env: dict[str, str], workdir: Path) -> dict[str, Any]:
    """Run this script in ``--child mode``; return the JSON it wrote (raise with its log tail on failure)."""
    result_file = workdir / f"{mode}-result.json"
    log_file = workdir / f"{mode}-child.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--result", str(result_file), *extra]
    with log_file.open("wb") as output:
        completed = subprocess.run(
            command,
            env=env,
            cwd=PROJECT_DIR,
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
    if completed.returncode != 0 or not result_file.exists():
        tail = log_file.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"{mode} child exited {completed.returncode}; its output ends with:\n{tail}")
    data: dict[str, Any] = json.loads(result_file.read_text())
    return data


# --------------------------------------------------------------------------- flow child


class RssSampler:
    """Samples this process's RSS in a daemon thread, so a peak can be tied to a phase."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self._interval_s = interval_s
        self._samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self._samples.append((time.monotonic(), int(process.memory_info().rss)))
            self._stop.wait(self._interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def max_between(self, start: float, end: float) -> int:
        """The largest RSS sampled between ``start`` and ``end``, or the last one before ``start``."""
        before = [rss for at, rss in self._samples if at < start][-1:]
        return max([*before, *(rss for at, rss in self._samples if start <= at <= end)], default=0)


class PhaseClock:
    """Wraps module-level functions with timers; records (phase, start, end) from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._intervals: list[tuple[str, float, float]] = []

    def wrap(self, module: ModuleType, name: str, phase: str, first_phase: str | None = None) -> None:
        """Replace ``module.name`` by a timed wrapper recorded under ``phase``.

        With ``first_phase``, the process's first call is recorded under that name instead.
        """
        original: Callable[..., Any] = getattr(module, name)
        first = [first_phase] if first_phase else []

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            try:
                return original(*args, **kwargs)
            finally:
                end = time.monotonic()
                with self._lock:
                    self._intervals.append((first.pop() if first else phase, start, end))

        setattr(module, name, timed)

    def reset(self) -> None:
        """Forget what was recorded (e.g. during the warm-up)."""
        with self._lock:
            self._intervals.clear()

    def phases(self, origin: float, rss: RssSampler) -> list[Phase]:
        """Per phase: calls, busy seconds (summed over threads), first start, last end, sampled max RSS."""
        by_phase: dict[str, list[tuple[float, float]]] = {}
        for phase, start, end in self._intervals:
            by_phase.setdefault(phase, []).append((start, end))
        return [
            Phase(
                name=phase,
                calls=len(spans),
                busy_s=sum(end - start for start, end in spans),
                first_start_s=min(start for start, _ in spans) - origin,
                last_end_s=max(end for _, end in spans) - origin,
                call_s=[end - start for start, end in spans],
                max_rss_bytes=max(rss.max_between(start, end) for start, end in spans),
            )
            for phase, spans in sorted(by_phase.items(), key=lambda item: min(s for s, _ in item[1]))
        ]

    def covered_s(self) -> float:
        """Wall seconds covered by at least one recorded interval (overlaps merged)."""
        covered = 0.0
        current_start, current_end = None, None
        for _, start, end in sorted(self._intervals, key=lambda interval: interval[1]):
            if current_end is None or start > current_end:
                if current_start is not None and current_end is not None:
                    covered += current_end - current_start
                current_start, current_end = start, end
            else:
                current_end = max(current_end, end)
        if current_start is not None and current_end is not None:
            covered += current_end - current_start
        return covered


def instrument(clock: PhaseClock) -> None:
    """Time the work the flow's tasks delegate to (the names the task modules call)."""
    clock.wrap(tasks.download, "download_file", "download + sha256 (HTTP)")
    clock.wrap(tasks.validate, "validate_parquet", "validate (pandera, per table)")
    clock.wrap(clickhouse_connect, "get_client", "open chDB client", first_phase="open chDB client (engine start)")
    clock.wrap(tasks.load, "stage_parquet", "stage (DDL + INSERT … FROM file + count)")
    clock.wrap(tasks.load, "check_unique_keys", "unique-key check (GROUP BY key)")
    clock.wrap(tasks.load, "publish", "publish (backup + REPLACE PARTITION)")
    clock.wrap(tasks.load, "drop_run_tables", "drop staging/backup tables")


@task(name="bench-warm-up-task")
def warm_up_task(value: int) -> int:
    """A trivial task, so the first real task run finds Prefect's task machinery started."""
    return value + 1


@flow(name="bench-warm-up")
def warm_up_flow() -> int:
    """A trivial flow run after the server starts and before the timed one."""
    return warm_up_task.submit(1).result() + warm_up_task(1)


def flow_child(base_url: str) -> dict[str, Any]:
    """Start a Prefect server, warm up, then time one ``ingest_sot`` run."""
    clock = PhaseClock()
    instrument(clock)
    with prefect_test_harness(server_startup_timeout=120):
        warm_up_flow()
        clock.reset()
        rss_before = current_rss_bytes()
        cpu_before, server_cpu_before = self_cpu_seconds(), children_cpu_seconds()
        with RssSampler() as rss:
            started = time.monotonic()
            outcome = ingest_sot(NETWORK, DAY, base_url=base_url)
            wall_s = time.monotonic() - started
        cpu_s, server_cpu_s = self_cpu_seconds() - cpu_before, children_cpu_seconds() - server_cpu_before
        peak = peak_rss_bytes()
    result = FlowResult(
        status=outcome.status,
        rows_by_table=dict(outcome.rows_by_table),
        bytes=outcome.bytes,
        wall_s=wall_s,
        pipeline_s=outcome.duration_s,
        rss_before_bytes=rss_before,
        peak_rss_bytes=peak,
        instrumented_s=clock.covered_s(),
        cpu_s=cpu_s,
        server_cpu_s=server_cpu_s,
        phases=clock.phases(started, rss),
    )
    return asdict(result)


# --------------------------------------------------------------------------- bare child


def bare_child(export_dir: Path) -> dict[str, Any]:
    """Create the flow's tables on a fresh chDB path and time a bare INSERT … FROM file per table."""
    database = "bare"
    batch_literal = format_query_value(f"sot:{NETWORK}/{DAY}:bench")
    warehouse = ClickHouseWarehouse(dsn=f"chdb://{get_settings().home_dir / 'warehouse'}")
    rows: dict[str, int] = {}
    seconds: dict[str, float] = {}
    started = time.monotonic()
    with warehouse.session() as client:
        client.command("SELECT 1")
        engine_start_s = time.monotonic() - started
        client.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
        for table in ingested_tables():
            client.command(table_ddl(SOT.table(table), database, table, SOT.partition_columns))
        for table in ingested_tables():
            target = f"{quote_identifier(database)}.{quote_identifier(table)}"
            source = format_query_value(str((export_dir / f"{table}.parquet").resolve()))
            started = time.monotonic()
            client.command(f"INSERT INTO {target} SELECT *, {batch_literal}, now64(3) FROM file({source}, Parquet)")
            seconds[table] = time.monotonic() - started
            rows[table] = int(client.command(f"SELECT count() FROM {target}"))  # type: ignore[arg-type]
    result = BareResult(
        rows_by_table=rows, seconds_by_table=seconds, engine_start_s=engine_start_s, peak_rss_bytes=peak_rss_bytes()
    )
    return asdict(result)


# --------------------------------------------------------------------------- parent


@contextmanager
def scratch_dir(keep: bool) -> Iterator[Path]:
    """A temporary directory under bench/out/, removed afterwards unless ``keep``."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="sot-load-", dir=OUT_DIR))
    try:
        yield path
    finally:
        if keep:
            log(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)
            with suppress(OSError):
                OUT_DIR.rmdir()  # only when empty


def measure(alerts: int, scratch: Path, keep: bool = False) -> SizeResult:
    """Generate an export of ``alerts`` rows, run the flow child and the bare child on it."""
    workdir = scratch / f"n{alerts}"
    exports = workdir / "exports"
    log(f"N={alerts:,}: generating the export")
    started = time.monotonic()
    export_dir = write_export(exports, NETWORK, DAY, alerts)
    generate_s = time.monotonic() - started
    tables = ingested_tables()
    export_bytes = sum((export_dir / f"{t}.parquet").stat().st_size for t in tables)
    log(f"N={alerts:,}: generated in {generate_s:.1f}s ({export_bytes / MIB:,.0f} MiB in the 4 ingested tables)")

    log(f"N={alerts:,}: running the flow (child process)")
    parent_cpu_before = self_cpu_seconds()
    with ExportServer(exports) as server:
        flow_data = run_child(
            "flow",
            ["--base-url", server.base_url],
            child_env(workdir / "home-flow", workdir / "prefect-flow"),
            workdir,
        )
    # The parent does nothing else meanwhile: its CPU is the export server's (whole child run,
    # so an upper bound of what serving the files cost).
    flow_data["export_server_cpu_s"] = self_cpu_seconds() - parent_cpu_before
    phases = [Phase(**p) for p in flow_data.pop("phases")]
    flow = FlowResult(**flow_data, phases=phases)
    if flow.status != LOADED:
        raise RuntimeError(f"expected the flow to load the export, found status {flow.status!r}")
    log(f"N={alerts:,}: flow {flow.wall_s:.1f}s; running the bare load (child process)")

    bare = BareResult(
        **run_child(
            "bare",
            ["--export-dir", str(export_dir)],
            child_env(workdir / "home-bare", workdir / "prefect-bare"),
            workdir,
        )
    )
    result = SizeResult(
        alerts=alerts,
        rows=sum(flow.rows_by_table.values()),
        export_bytes=export_bytes,
        generate_s=generate_s,
        flow=flow,
        bare=bare,
    )
    if flow.rows_by_table != bare.rows_by_table:
        raise RuntimeError(f"row counts differ: flow {flow.rows_by_table}, bare {bare.rows_by_table}")
    log(f"N={alerts:,}: bare {result.bare_s:.1f}s; ratio {result.ratio:.2f}")
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)  # free the disk before the next size
    return result


def rss_ratios(results: list[SizeResult]) -> dict[str, float] | None:
    """Peak RSS at 4N over peak RSS at N, and the same for the growth above the pre-flow RSS."""
    if len(results) < 2:
        return None
    small, large = results[0].flow, results[1].flow
    return {
        "peak": large.peak_rss_bytes / small.peak_rss_bytes,
        "above_baseline": (large.peak_rss_bytes - large.rss_before_bytes)
        / max(small.peak_rss_bytes - small.rss_before_bytes, 1),
    }


def render(results: list[SizeResult]) -> str:
    """The human-readable report."""
    labels = ["N" if i == 0 else "4N" for i in range(len(results))]
    heads = [f"{label}={r.alerts:,}" for label, r in zip(labels, results, strict=True)]
    width = 44

    def row(name: str, values: list[str]) -> str:
        return name.ljust(width) + "".join(v.rjust(18) for v in values)

    lines = [
        f"SOT load benchmark: {NETWORK} {DAY}, {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}",
        row("", heads),
        row("rows loaded (4 ingested tables)", [f"{r.rows:,}" for r in results]),
        row("Parquet bytes (4 ingested tables)", [f"{r.export_bytes / MIB:,.1f} MiB" for r in results]),
        row("flow seconds (wall, server start excluded)", [f"{r.flow.wall_s:.2f}" for r in results]),
        row("flow rows/s", [f"{r.flow_rows_per_s:,.0f}" for r in results]),
        row(
            "  pipeline duration_s / rows/s",
            [f"{r.flow.pipeline_s:.2f} / {r.pipeline_rows_per_s:,.0f}" for r in results],
        ),
        row("bare load seconds (4 INSERTs)", [f"{r.bare_s:.2f}" for r in results]),
        row("bare load rows/s", [f"{r.bare_rows_per_s:,.0f}" for r in results]),
        row(f"ratio flow/bare (target ≥ {TARGET_RATIO})", [f"{r.ratio:.3f}" for r in results]),
        row(
            "CPU s during the flow: flow / Prefect server",
            [f"{r.flow.cpu_s:.1f} / {r.flow.server_cpu_s:.1f}" for r in results],
        ),
        row("  CPU s of the export server (parent)", [f"{r.flow.export_server_cpu_s:.1f}" for r in results]),
        row("peak RSS flow process", [f"{r.flow.peak_rss_bytes / MIB:,.0f} MiB" for r in results]),
        row("  RSS before the flow (after warm-up)", [f"{r.flow.rss_before_bytes / MIB:,.0f} MiB" for r in results]),
        row("peak RSS bare-load process", [f"{r.bare.peak_rss_bytes / MIB:,.0f} MiB" for r in results]),
    ]
    ratios = rss_ratios(results)
    if ratios:
        lines.append(
            f"RSS ratio 4N/N: peak {ratios['peak']:.2f}, growth above pre-flow RSS {ratios['above_baseline']:.2f} "
            "(proportional growth would be 4)"
        )
    for label, result in zip(labels, results, strict=True):
        flow = result.flow
        lines += [
            "",
            f"Where the flow's time goes at {label}={result.alerts:,} (offsets from the call, seconds; "
            "busy sums threads, downloads and validations overlap):",
            f"  {'phase':<44}{'calls':>6}{'busy s':>9}{'from':>9}{'to':>9}{'max RSS':>11}   per call (in call order)",
        ]
        lines += [
            f"  {p.name:<44}{p.calls:>6}{p.busy_s:>9.2f}{p.first_start_s:>9.2f}{p.last_end_s:>9.2f}"
            f"{p.max_rss_bytes / MIB:>7,.0f} MiB   " + " ".join(f"{c:.2f}" for c in p.call_s)
            for p in flow.phases
        ]
        lines.append(
            f"  {'outside the phases above (orchestration, verify, ledger, cleanup)':<59}"
            f"{flow.wall_s - flow.instrumented_s:>9.2f} of {flow.wall_s:.2f} wall"
        )
        bare = result.bare
        per_table = ", ".join(f"{t} {s:.2f}s" for t, s in bare.seconds_by_table.items())
        lines.append(f"  bare INSERTs: {per_table} (chDB engine start {bare.engine_start_s:.2f}s, not counted)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of raw_alerts (N), default 2,000,000")
    parser.add_argument("--skip-4n", action="store_true", help="measure N only (no RSS ratio)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory under bench/out/")
    parser.add_argument("--child", choices=("flow", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--export-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        data = flow_child(args.base_url) if args.child == "flow" else bare_child(args.export_dir)
        args.result.write_text(json.dumps(data))
        return 0

    if args.rows < 1:
        parser.error("--rows must be positive")
    sizes = [args.rows] if args.skip_4n else [args.rows, 4 * args.rows]
    with scratch_dir(args.keep) as scratch:
        results = [measure(size, scratch, args.keep) for size in sizes]
    if args.json:
        print(
            json.dumps(
                {
                    "network": NETWORK,
                    "processing_date": DAY.isoformat(),
                    "cpus": os.cpu_count(),
                    "target_ratio": TARGET_RATIO,
                    "sizes": [r.to_json() for r in results],
                    "rss_ratio_4n_over_n": rss_ratios(results),
                },
                indent=2,
            )
        )
    else:
        print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
