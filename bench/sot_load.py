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
The figures are single runs unless ``--repeat`` (below): on a small or shared machine, repeat and compare.
Targets (from the issue): flow rows/s ≥ 0.8 × bare rows/s, and a flow peak RSS that
does not grow in proportion to N (4N/N well below 4).

Run from the project root::

    .venv/bin/python bench/sot_load.py                   # N = 3,000,000 and 4N
    .venv/bin/python bench/sot_load.py --skip-4n --repeat 5 --schemes file,http
    .venv/bin/python bench/sot_load.py --rows 1000000 --skip-4n
    .venv/bin/python bench/sot_load.py --json > result.json

A single run on a small or shared machine varies by about ±10 % (the bare load alone
took 3.0 to 3.5 s at N on one afternoon here): ``--repeat K`` alternates flows and bare
load K times at N and reports the medians and each round's ratio.

Scratch files go to a temporary directory under ``bench/out/`` (git-ignored), removed
at the end unless ``--keep``. Progress goes to stderr; the report to stdout.
"""

from __future__ import annotations

import argparse
import contextvars
import functools
import importlib
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
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar, cast

import clickhouse_connect
import psutil
from clickhouse_connect.driver.binding import format_query_value, quote_identifier
from prefect import flow, task
from prefect.testing.utilities import prefect_test_harness

from blocks.warehouse import ClickHouseWarehouse
from devtools.export_server import ExportServer
from devtools.generate import write_export
from flows.sot import ingest_sot
from headwater.cli import local_runs
from headwater.ledger import LOADED
from headwater.outcome import BatchOutcome
from headwater.settings import get_settings
from headwater.sources.sot.contract import SOT
from headwater.tables import table_ddl

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"
NETWORK = "ethereum"
NETWORKS = ("ethereum", "bitcoin", "torus")
SCHEMES = ("http", "file")
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
    """What the flow child measured, for one scheme (``http`` or ``file``) and one or more networks."""

    scheme: str
    networks: list[str]
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
    stages_s: dict[str, float]
    task_runs: int
    export_server_cpu_s: float = 0.0
    phases: list[Phase] = field(default_factory=list)


@dataclass
class BareResult:
    """What the bare-load child measured (one or more networks' exports, loaded one after the other)."""

    rows_by_table: dict[str, int]
    seconds_by_table: dict[str, float]
    engine_start_s: float
    peak_rss_bytes: int
    cpu_s: float

    @property
    def seconds(self) -> float:
        """Seconds of the bare INSERTs, summed."""
        return sum(self.seconds_by_table.values())


@dataclass
class SizeResult:
    """One size's figures: the flow per scheme, the bare load, and their ratios."""

    alerts: int
    rows: int
    export_bytes: int
    generate_s: float
    flows: dict[str, FlowResult]
    bare: BareResult
    rounds: dict[str, list[float]] = field(default_factory=dict)
    """With ``--repeat``: per scheme, the ratio of each round (its flow over the bare load of the same round)."""

    def ratio(self, scheme: str) -> float:
        """Flow rows/s over bare rows/s for ``scheme`` (target ≥ 0.8): the bare seconds over the flow's."""
        return self.bare.seconds / self.flows[scheme].wall_s

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict with the derived figures."""
        return {
            **asdict(self),
            "bare_s": self.bare.seconds,
            "ratio_flow_over_bare": {scheme: self.ratio(scheme) for scheme in self.flows},
        }


@dataclass
class ThreeResult:
    """Three networks' exports at once against the sum of their three bare loads."""

    alerts: int
    rows: int
    flow: FlowResult
    bare: BareResult

    @property
    def ratio(self) -> float:
        """The sum of three bare loads over the wall time of the three flows run at once."""
        return self.bare.seconds / self.flow.wall_s


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

    def intervals(self) -> list[tuple[str, float, float]]:
        """Every recorded (phase, start, end)."""
        with self._lock:
            return list(self._intervals)

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


STAGES = {
    "download + sha256": "download+hash",
    "open chDB client": "staging",
    "open chDB client (engine start)": "staging",
    "stage (DDL + INSERT … FROM file + count)": "staging",
    "checks in the engine (one scan)": "checks",
    "duplicate-key examples": "checks",
    "pandera (polars) validation": "checks",
    "plan publish (backups)": "publish",
    "publish (REPLACE PARTITION)": "publish",
    "drop staging/backup tables": "publish",
    "ledger + circuit + reconcile": "ledger",
}
"""Each instrumented phase's stage in the breakdown; what no phase covers is orchestration."""


def instrument(clock: PhaseClock) -> None:
    """Time the work the flow's steps delegate to (the names the pipeline modules call).

    Names a version of the code lacks are skipped, so the same script measures the code
    before a change (validation in a polars task, the key check as its own query) and after.
    """
    targets = [
        ("tasks.download", "download_file", "download + sha256"),
        ("headwater.loading", "stage_parquet", "stage (DDL + INSERT … FROM file + count)"),
        ("tasks.load", "stage_parquet", "stage (DDL + INSERT … FROM file + count)"),
        ("headwater.loading", "run_checks", "checks in the engine (one scan)"),
        ("headwater.loading", "duplicate_keys_message", "duplicate-key examples"),
        ("headwater.loading", "validate_parquet", "pandera (polars) validation"),
        ("tasks.validate", "validate_parquet", "pandera (polars) validation"),
        ("tasks.load", "check_unique_keys", "duplicate-key examples"),
        ("tasks.load", "plan_publish", "plan publish (backups)"),
        ("tasks.load", "publish", "publish (REPLACE PARTITION)"),
        ("tasks.load", "drop_run_tables", "drop staging/backup tables"),
        *(
            ("tasks.pipeline", name, "ledger + circuit + reconcile")
            for name in ("reconcile_instance", "check_gate", "record_start", "is_unchanged", "record_outcome")
        ),
    ]
    clock.wrap(clickhouse_connect, "get_client", "open chDB client", first_phase="open chDB client (engine start)")
    for module_name, name, phase in targets:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, name):
            clock.wrap(module, name, phase)


@task(name="bench-warm-up-task")
def warm_up_task(value: int) -> int:
    """A trivial task, so the first real task run finds Prefect's task machinery started."""
    return value + 1


@flow(name="bench-warm-up")
def warm_up_flow() -> int:
    """A trivial flow run after the server starts and before the timed one."""
    return warm_up_task.submit(1).result() + warm_up_task(1)


def union_s(spans: list[tuple[float, float]]) -> float:
    """Wall seconds covered by at least one of ``spans`` (overlaps merged)."""
    covered, end_so_far = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end <= end_so_far:
            continue
        covered += end - max(start, end_so_far)
        end_so_far = end
    return covered


def stage_breakdown(clock: PhaseClock, wall_s: float) -> dict[str, float]:
    """Wall seconds per stage (threads merged); orchestration is what no instrumented step covers."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for phase, start, end in clock.intervals():
        spans.setdefault(STAGES.get(phase, phase), []).append((start, end))
    stages = {stage: union_s(found) for stage, found in spans.items()}
    stages["orchestration"] = wall_s - union_s([span for found in spans.values() for span in found])
    return stages


def count_task_runs(flow_name: str = SOT.flow_name, settle_s: float = 5.0) -> int:
    """Task runs of ``flow_name``'s runs the Prefect server holds, once the count settles.

    Task runs reach the server as events, shortly after they ran: the count is read
    until two reads half a second apart agree (at most ``settle_s``).
    """
    from prefect.client.orchestration import get_client

    body = {"flows": {"name": {"any_": [flow_name]}}}
    with get_client(sync_client=True) as client:
        count, deadline = -1, time.monotonic() + settle_s
        while time.monotonic() < deadline:
            found = int(client.request("POST", "/task_runs/count", json=body).json())
            if found == count:
                break
            count = found
            time.sleep(0.5)
        return count


def run_networks(networks: list[str], base_url: str) -> list[BatchOutcome]:
    """``ingest_sot`` of each network: in this thread for one, at once in threads for several.

    Each thread runs in a copy of this thread's context, so the runs see the settings
    :func:`local_runs` set (no heartbeats), as ``python -m flows.sot`` does; a bare
    thread would start Prefect's heartbeat thread and join it (up to a second) at the end.
    """
    if len(networks) == 1:
        return [cast(BatchOutcome, ingest_sot(networks[0], DAY, base_url=base_url))]
    with ThreadPoolExecutor(max_workers=len(networks)) as pool:
        futures = [
            pool.submit(contextvars.copy_context().run, ingest_sot, network, DAY, base_url=base_url)
            for network in networks
        ]
        return [cast(BatchOutcome, future.result()) for future in futures]


def flow_child(base_url: str, networks: list[str], scheme: str) -> dict[str, Any]:
    """Start a Prefect server, warm up, then time ``ingest_sot`` of each network (at once when several)."""
    clock = PhaseClock()
    instrument(clock)
    with prefect_test_harness(server_startup_timeout=120), local_runs():  # as `python -m flows.sot` runs
        warm_up_flow()
        # The temporary server (SQLite) writes the warm-up's task runs from their events a moment
        # later; a flow run created meanwhile can meet a locked database and Prefect's client
        # then retries it after about 2 s (seen in this benchmark, never in the timed run since).
        count_task_runs("bench-warm-up")
        clock.reset()
        rss_before = current_rss_bytes()
        cpu_before, server_cpu_before = self_cpu_seconds(), children_cpu_seconds()
        with RssSampler() as rss:
            started = time.monotonic()
            outcomes = run_networks(networks, base_url)
            wall_s = time.monotonic() - started
        cpu_s, server_cpu_s = self_cpu_seconds() - cpu_before, children_cpu_seconds() - server_cpu_before
        peak = peak_rss_bytes()
        task_runs = count_task_runs() // len(networks)
    rows: dict[str, int] = {}
    for outcome in outcomes:
        for table, count in outcome.rows_by_table.items():
            rows[table] = rows.get(table, 0) + count
    statuses = {outcome.status for outcome in outcomes}
    result = FlowResult(
        scheme=scheme,
        networks=networks,
        status=statuses.pop() if len(statuses) == 1 else ",".join(sorted(statuses)),
        rows_by_table=rows,
        bytes=sum(outcome.bytes for outcome in outcomes),
        wall_s=wall_s,
        pipeline_s=max(outcome.duration_s for outcome in outcomes),
        rss_before_bytes=rss_before,
        peak_rss_bytes=peak,
        instrumented_s=clock.covered_s(),
        cpu_s=cpu_s,
        server_cpu_s=server_cpu_s,
        stages_s=stage_breakdown(clock, wall_s),
        task_runs=task_runs,
        phases=clock.phases(started, rss),
    )
    return asdict(result)


# --------------------------------------------------------------------------- bare child


def bare_child(export_dirs: list[Path]) -> dict[str, Any]:
    """Create the flow's tables on a fresh chDB path and time a bare INSERT … FROM file per table and export."""
    database = "bare"
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
        cpu_before = self_cpu_seconds()
        for export_dir in export_dirs:
            batch_literal = format_query_value(f"sot:{export_dir.parent.name}/{DAY}:bench")
            for table in ingested_tables():
                target = f"{quote_identifier(database)}.{quote_identifier(table)}"
                source = format_query_value(str((export_dir / f"{table}.parquet").resolve()))
                started = time.monotonic()
                client.command(f"INSERT INTO {target} SELECT *, {batch_literal}, now64(3) FROM file({source}, Parquet)")
                seconds[table] = seconds.get(table, 0.0) + time.monotonic() - started
        cpu_s = self_cpu_seconds() - cpu_before
        for table in ingested_tables():
            target = f"{quote_identifier(database)}.{quote_identifier(table)}"
            rows[table] = int(client.command(f"SELECT count() FROM {target}"))  # type: ignore[arg-type]
    result = BareResult(
        rows_by_table=rows,
        seconds_by_table=seconds,
        engine_start_s=engine_start_s,
        peak_rss_bytes=peak_rss_bytes(),
        cpu_s=cpu_s,
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


def run_flow(exports: Path, workdir: Path, scheme: str, networks: list[str], round_: int = 0) -> FlowResult:
    """The flow child over ``scheme`` (an export server on loopback for http, the directory for file), fresh homes."""
    name = f"flow-{scheme}-{len(networks)}-{round_}"
    env = child_env(workdir / f"home-{name}", workdir / f"prefect-{name}")
    parent_cpu_before = self_cpu_seconds()
    extra = ["--scheme", scheme, "--networks", ",".join(networks)]
    if scheme == "http":
        with ExportServer(exports) as server:
            data = run_child("flow", ["--base-url", server.base_url, *extra], env, workdir)
    else:
        data = run_child("flow", ["--base-url", exports.resolve().as_uri(), *extra], env, workdir)
    # The parent does nothing else meanwhile: its CPU is the export server's (an upper bound).
    data["export_server_cpu_s"] = self_cpu_seconds() - parent_cpu_before
    phases = [Phase(**p) for p in data.pop("phases")]
    flow = FlowResult(**data, phases=phases)
    if flow.status != LOADED:
        raise RuntimeError(f"expected the flow to load the export, found status {flow.status!r}")
    return flow


def run_bare(export_dirs: list[Path], workdir: Path, name: str) -> BareResult:
    """The bare-load child over ``export_dirs``."""
    env = child_env(workdir / f"home-{name}", workdir / f"prefect-{name}")
    return BareResult(**run_child("bare", ["--export-dirs", *map(str, export_dirs)], env, workdir))


T = TypeVar("T")


def median_by(items: list[T], key: Callable[[T], float]) -> T:
    """The middle item by ``key`` (the lower middle for an even count)."""
    return sorted(items, key=key)[(len(items) - 1) // 2]


def measure(alerts: int, scratch: Path, schemes: list[str], keep: bool = False, repeat: int = 1) -> SizeResult:
    """Generate an export of ``alerts`` rows, run the flow child per scheme and the bare child on it.

    With ``repeat`` > 1, flows and bare load alternate for that many rounds (so a slow
    spell of the machine hits both), and the medians are reported, with each round's ratio.
    """
    workdir = scratch / f"n{alerts}"
    exports = workdir / "exports"
    log(f"N={alerts:,}: generating the export")
    started = time.monotonic()
    export_dir = write_export(exports, NETWORK, DAY, alerts)
    generate_s = time.monotonic() - started
    tables = ingested_tables()
    export_bytes = sum((export_dir / f"{t}.parquet").stat().st_size for t in tables)
    log(f"N={alerts:,}: generated in {generate_s:.1f}s ({export_bytes / MIB:,.0f} MiB in the 4 ingested tables)")
    runs: dict[str, list[FlowResult]] = {scheme: [] for scheme in schemes}
    bares: list[BareResult] = []
    for round_ in range(repeat):
        for scheme in schemes:
            log(f"N={alerts:,}: running the flow over {scheme}:// (child process, round {round_ + 1} of {repeat})")
            runs[scheme].append(run_flow(exports, workdir, scheme, [NETWORK], round_))
            log(f"N={alerts:,}: flow over {scheme}:// {runs[scheme][-1].wall_s:.1f}s")
        bares.append(run_bare([export_dir], workdir, f"bare-{round_}"))
    bare = median_by(bares, lambda b: b.seconds)
    result = SizeResult(
        alerts=alerts,
        rows=sum(bare.rows_by_table.values()),
        export_bytes=export_bytes,
        generate_s=generate_s,
        flows={scheme: median_by(found, lambda f: f.wall_s) for scheme, found in runs.items()},
        bare=bare,
        rounds={s: [b.seconds / f.wall_s for f, b in zip(runs[s], bares, strict=True)] for s in schemes}
        if repeat > 1
        else {},
    )
    for found in result.flows.values():
        if found.rows_by_table != bare.rows_by_table:
            raise RuntimeError(f"row counts differ: flow {found.rows_by_table}, bare {bare.rows_by_table}")
    log(f"N={alerts:,}: bare {bare.seconds:.1f}s; " + ", ".join(f"{s} {result.ratio(s):.2f}" for s in result.flows))
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)  # free the disk before the next size
    return result


def measure_three(alerts: int, scratch: Path, keep: bool = False) -> ThreeResult:
    """Three networks' exports of ``alerts`` rows each, ingested at once over http, against three bare loads."""
    workdir = scratch / f"three-{alerts}"
    exports = workdir / "exports"
    log(f"3 networks x N={alerts:,}: generating the exports")
    dirs = [write_export(exports, network, DAY, alerts, salt=i) for i, network in enumerate(NETWORKS)]
    flow = run_flow(exports, workdir, "http", list(NETWORKS))
    bare = run_bare(dirs, workdir, "bare-three")
    if flow.rows_by_table != bare.rows_by_table:
        raise RuntimeError(f"row counts differ: flow {flow.rows_by_table}, bare {bare.rows_by_table}")
    result = ThreeResult(alerts=alerts, rows=sum(bare.rows_by_table.values()), flow=flow, bare=bare)
    log(f"3 networks: flow {flow.wall_s:.1f}s, bare {bare.seconds:.1f}s, ratio {result.ratio:.2f}")
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def rss_ratios(results: list[SizeResult]) -> dict[str, float] | None:
    """Peak RSS at 4N over peak RSS at N (first scheme), and the same for the growth above the pre-flow RSS."""
    if len(results) < 2:
        return None
    scheme = next(iter(results[0].flows))
    small, large = results[0].flows[scheme], results[1].flows[scheme]
    return {
        "peak": large.peak_rss_bytes / small.peak_rss_bytes,
        "above_baseline": (large.peak_rss_bytes - large.rss_before_bytes)
        / max(small.peak_rss_bytes - small.rss_before_bytes, 1),
    }


STAGE_ORDER = ("download+hash", "staging", "checks", "publish", "ledger", "orchestration")


def render(results: list[SizeResult], three: ThreeResult | None) -> str:
    """The human-readable report."""
    width = 46
    columns = [
        (f"{'N' if i == 0 else '4N'}={r.alerts:,} {scheme}", r, flow)
        for i, r in enumerate(results)
        for scheme, flow in r.flows.items()
    ]

    def row(name: str, values: list[str]) -> str:
        return name.ljust(width) + "".join(" " + v.rjust(19) for v in values)

    lines = [
        f"SOT load benchmark: {NETWORK} {DAY}, {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}",
        row("", [head for head, _, _ in columns]),
        row("rows loaded (4 ingested tables)", [f"{r.rows:,}" for _, r, _ in columns]),
        row("Parquet bytes (4 ingested tables)", [f"{r.export_bytes / MIB:,.1f} MiB" for _, r, _ in columns]),
        row("flow seconds (wall, server start excluded)", [f"{f.wall_s:.2f}" for _, _, f in columns]),
        row("bare load seconds (4 INSERTs)", [f"{r.bare.seconds:.2f}" for _, r, _ in columns]),
        row(f"ratio flow/bare (target ≥ {TARGET_RATIO})", [f"{r.ratio(f.scheme):.3f}" for _, r, f in columns]),
        *(
            [
                row(
                    "  ratio of each round (--repeat)",
                    [" ".join(f"{x:.2f}" for x in r.rounds.get(f.scheme, [])) for _, r, f in columns],
                )
            ]
            if any(r.rounds for _, r, _ in columns)
            else []
        ),
        row("flow rows/s", [f"{r.rows / f.wall_s:,.0f}" for _, r, f in columns]),
        row("bare rows/s", [f"{r.rows / r.bare.seconds:,.0f}" for _, r, _ in columns]),
        row("CPU s: flow process / bare INSERTs", [f"{f.cpu_s:.1f} / {r.bare.cpu_s:.1f}" for _, r, f in columns]),
        row(
            "  CPU s: Prefect server / export server",
            [f"{f.server_cpu_s:.1f} / {f.export_server_cpu_s:.1f}" for _, _, f in columns],
        ),
        row("task runs per SOT run", [str(f.task_runs) for _, _, f in columns]),
        row(
            "peak RSS: flow / bare",
            [f"{f.peak_rss_bytes / MIB:,.0f} / {r.bare.peak_rss_bytes / MIB:,.0f} MiB" for _, r, f in columns],
        ),
        row("  RSS before the flow (after warm-up)", [f"{f.rss_before_bytes / MIB:,.0f} MiB" for _, _, f in columns]),
        "",
        "Per-stage wall seconds of the flow (threads merged; orchestration: what no step covers):",
    ]
    lines += [row(f"  {stage}", [f"{f.stages_s.get(stage, 0.0):.2f}" for _, _, f in columns]) for stage in STAGE_ORDER]
    ratios = rss_ratios(results)
    if ratios:
        lines.append(
            f"RSS ratio 4N/N: peak {ratios['peak']:.2f}, growth above pre-flow RSS {ratios['above_baseline']:.2f} "
            "(proportional growth would be 4)"
        )
    if three:
        lines += [
            "",
            f"Three networks at once ({', '.join(NETWORKS)}), N={three.alerts:,} each, http://, one process:",
            f"  flow {three.flow.wall_s:.2f}s for {three.rows:,} rows; three bare loads {three.bare.seconds:.2f}s; "
            f"ratio {three.ratio:.3f}; CPU s flow {three.flow.cpu_s:.1f} / bare {three.bare.cpu_s:.1f}; "
            f"peak RSS {three.flow.peak_rss_bytes / MIB:,.0f} MiB",
            "  stages: " + ", ".join(f"{s} {three.flow.stages_s.get(s, 0.0):.2f}" for s in STAGE_ORDER),
        ]
    for head, _, measured in columns:
        lines += [
            "",
            f"Phases at {head} (offsets from the call, seconds; busy sums threads):",
            f"  {'phase':<44}{'calls':>6}{'busy s':>9}{'from':>9}{'to':>9}{'max RSS':>11}",
        ]
        lines += [
            f"  {p.name:<44}{p.calls:>6}{p.busy_s:>9.2f}{p.first_start_s:>9.2f}{p.last_end_s:>9.2f}"
            f"{p.max_rss_bytes / MIB:>7,.0f} MiB"
            for p in measured.phases
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000, help="rows of raw_alerts (N), default 3,000,000")
    parser.add_argument("--skip-4n", action="store_true", help="measure N only (no RSS ratio)")
    parser.add_argument("--schemes", default="http,file", help="base URL schemes to measure, default http,file")
    parser.add_argument("--three", action="store_true", help="also ingest three networks at once (N each)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of flows and bare load at N, alternating; medians reported"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory under bench/out/")
    parser.add_argument("--child", choices=("flow", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--scheme", help=argparse.SUPPRESS)
    parser.add_argument("--networks", help=argparse.SUPPRESS)
    parser.add_argument("--export-dirs", type=Path, nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        if args.child == "flow":
            data = flow_child(args.base_url, args.networks.split(","), args.scheme)
        else:
            data = bare_child(args.export_dirs)
        args.result.write_text(json.dumps(data))
        return 0

    if args.rows < 1 or args.repeat < 1:
        parser.error("--rows and --repeat must be positive")
    schemes = [s for s in args.schemes.split(",") if s]
    if not schemes or set(schemes) - set(SCHEMES):
        parser.error(f"--schemes: expected some of {', '.join(SCHEMES)}, found {args.schemes!r}")
    sizes = [args.rows] if args.skip_4n else [args.rows, 4 * args.rows]
    with scratch_dir(args.keep) as scratch:
        results = [
            measure(size, scratch, schemes if i == 0 else schemes[:1], args.keep, args.repeat if i == 0 else 1)
            for i, size in enumerate(sizes)
        ]
        three = measure_three(args.rows, scratch, args.keep) if args.three else None
    if args.json:
        print(
            json.dumps(
                {
                    "network": NETWORK,
                    "processing_date": DAY.isoformat(),
                    "cpus": os.cpu_count(),
                    "target_ratio": TARGET_RATIO,
                    "sizes": [r.to_json() for r in results],
                    "three_networks": asdict(three) | {"ratio": three.ratio} if three else None,
                    "rss_ratio_4n_over_n": rss_ratios(results),
                },
                indent=2,
            )
        )
    else:
        print(render(results, three))
    return 0


if __name__ == "__main__":
    sys.exit(main())
