"""Watch the folders of the on-arrival file sources and emit an event per new or changed file.

python -m flows.filedrop_watch [--source NAME ...] [--config PATH] [--poll-s 10] [--run-for-s 45] [--settle-s 2]

Each new or changed file (size and mtime first, then its SHA-256) emits
``headwater.filedrop.arrived`` about ``headwater.source.<name>`` with the file's path and
hash; the source's automation (``deployments/automations.py``) runs its deployment with
that file. What was seen is kept in the ledger's ``source_state``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from prefect import flow
from prefect.client.schemas.objects import State

from blocks.ledger import open_ledger
from flows.factory import fails_with_reason
from headwater import events
from headwater.catchup import LATEST, apply_catch_up, superseded_state
from headwater.cli import local_runs, parse_command_line, report_error
from headwater.errors import ConfigurationError
from headwater.filedrop import STATE_KEY, Arrival, FileSource, dump_seen, load_config, parse_seen, scan_folder
from headwater.logs import run_logger
from headwater.params import FLOW_TIMEOUT_S

DEFAULT_POLL_S = 10.0
DEFAULT_RUN_FOR_S = 45.0
DEFAULT_SETTLE_S = 2.0


def watched_sources(names: Sequence[str] | None, config_path: str | None) -> list[FileSource]:
    """The sources to watch: those named, else every ``on_arrival`` source; ConfigurationError on an unknown name."""
    declared = load_config(config_path)
    if not names:
        return [source for source in declared.values() if source.on_arrival]
    unknown = [name for name in names if name not in declared]
    if unknown:
        raise ConfigurationError("filedrop-watch", f"no file source {unknown[0]!r} (declared: {', '.join(declared)})")
    return [declared[name] for name in names]


def scan_source(source: FileSource, settle_s: float) -> list[Arrival]:
    """Scan one source's folder, emit an event per arrival, then remember what was seen."""
    with open_ledger() as ledger:
        seen = parse_seen(ledger.get_state(source.name, STATE_KEY))
    arrivals, state = scan_folder(source, seen, settle_s, time.time())
    for arrival in arrivals:
        events.emit(
            events.FILEDROP_ARRIVED,
            source.name,
            source.name,
            path=arrival.path,
            sha256=arrival.sha256,
            bytes=arrival.bytes,
            folder=str(source.folder),
        )
        run_logger().info(
            "%s: %s arrived (%s bytes, sha256 %s)", source.name, arrival.path, arrival.bytes, arrival.sha256
        )
    if state != seen:
        with open_ledger() as ledger:
            ledger.set_state(source.name, STATE_KEY, dump_seen(state))
    return arrivals


@flow(name="watch-file-drops", flow_run_name="watch file drops", timeout_seconds=FLOW_TIMEOUT_S)
@fails_with_reason
def watch_file_drops(
    sources: list[str] | None = None,
    config_path: str | None = None,
    poll_s: float = DEFAULT_POLL_S,
    run_for_s: float = DEFAULT_RUN_FOR_S,
    settle_s: float = DEFAULT_SETTLE_S,
) -> list[Arrival] | State:
    """Scan the on-arrival sources' folders every ``poll_s`` seconds for ``run_for_s`` seconds (at least once).

    Deployed every minute, so a dropped file is seen within about ``poll_s`` seconds while
    a run lasts less than the minute; a file modified in the last ``settle_s`` seconds is
    left for the next scan (it may still be being written). ``sources`` limits the scan to
    those names (default: every source whose schedule is ``on_arrival``). After downtime
    only the newest of the late runs scans (catch-up ``latest``); the others are cancelled.
    """
    if not poll_s > 0 or not run_for_s >= 0 or not settle_s >= 0:
        raise ConfigurationError(
            "filedrop-watch",
            f"expected poll_s > 0, run_for_s >= 0, settle_s >= 0, found {poll_s}, {run_for_s}, {settle_s}",
        )
    chosen = watched_sources(sources, config_path)
    decision = apply_catch_up(LATEST)
    if not decision.proceed:
        return superseded_state(decision)
    deadline = time.monotonic() + run_for_s
    arrivals: list[Arrival] = []
    while True:
        for source in chosen:
            arrivals += scan_source(source, settle_s)
        if time.monotonic() + poll_s > deadline:
            return arrivals
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: print one line per arrival; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m flows.filedrop_watch", description=__doc__.splitlines()[0])
    parser.add_argument("--source", action="append", default=None, help="a source to watch (repeatable)")
    parser.add_argument("--config", default=None, help="the sources file (default: sources.yaml at the repo root)")
    parser.add_argument("--poll-s", type=float, default=DEFAULT_POLL_S, help="seconds between scans")
    parser.add_argument("--run-for-s", type=float, default=0.0, help="keep scanning this long (default: scan once)")
    parser.add_argument("--settle-s", type=float, default=DEFAULT_SETTLE_S, help="leave files younger than this")
    args = parse_command_line(parser, argv)
    try:
        with local_runs():
            arrivals = watch_file_drops(args.source, args.config, args.poll_s, args.run_for_s, args.settle_s)
    except Exception as error:  # the one-line reason is the contract; the traceback is in the logs
        return report_error(error)
    for arrival in arrivals if isinstance(arrivals, list) else []:
        print(f"{arrival.source}: {arrival.path} arrived ({arrival.bytes} bytes, sha256 {arrival.sha256})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
