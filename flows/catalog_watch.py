"""Probe every catalog ingestor's feed and emit ``headwater.catalog.feed.changed`` for each that changed.

python -m flows.catalog_watch [--config PATH]

The ``catalog-watch`` deployment runs this every few minutes
(``HEADWATER_CATALOG_CHECK_INTERVAL_MIN``); the automation ``headwater-catalog-<name>``
(``python -m deployments.catalog``) turns each event into a run of ``catalog-<name>``.
Nothing runs when nothing changed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefect import flow

from blocks.ledger import open_ledger
from flows.factory import fails_with_reason
from headwater import events
from headwater.catalog.config import load_ingestion
from headwater.catalog.probe import PREFIX, probe_local, probe_remote
from headwater.cli import local_runs, parse_command_line, report_error
from headwater.logs import run_logger
from headwater.params import FLOW_TIMEOUT_S
from headwater.settings import get_settings


@flow(name="watch-catalog-feeds", flow_run_name="catalog feed check", timeout_seconds=FLOW_TIMEOUT_S)
@fails_with_reason
def watch_catalog_feeds(config: str | None = None) -> dict[str, str]:
    """Probe each ingestor's feed once; returns each ingestor's verdict.

    Args:
        config: path of the ingestion.yaml (default HEADWATER_INGESTION_CONFIG, else ./ingestion.yaml)

    """
    logger = run_logger()
    path = Path(config) if config else get_settings().ingestion_config
    verdicts: dict[str, str] = {}
    for ingestor in load_ingestion(path).values():
        if not ingestor.feed_path:
            continue
        location = ingestor.location(ingestor.feed_path, path.parent)
        with open_ledger() as ledger:
            previous = {k: v for k, v in ledger.all_state(ingestor.instance).items() if k.startswith(PREFIX)}
        if ingestor.source_type == "remote":
            probe = probe_remote(ingestor.instance, location, previous)
        else:
            probe = probe_local(Path(location), previous)
        with open_ledger() as ledger:
            for key, value in probe.state.items():
                ledger.set_state(ingestor.instance, key, value)
        if probe.changed:
            events.emit(events.CATALOG_FEED_CHANGED, ingestor.instance, "catalog", location=location)
        logger.info("%s: %s", ingestor.instance, probe.detail)
        verdicts[ingestor.name] = "changed" if probe.changed else "unchanged"
    return verdicts


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m flows.catalog_watch", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="path of ingestion.yaml")
    args = parse_command_line(parser, argv)
    try:
        with local_runs():
            verdicts = watch_catalog_feeds(args.config)
    except Exception as error:  # one-line reason
        return report_error(error)
    for name, verdict in verdicts.items():
        print(f"catalog-{name}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
