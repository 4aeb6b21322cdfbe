"""Ingest new OpenAQ measurements of the configured locations (incremental, every 2 hours).

python -m flows.openaq [--locations 2178,8118] [--base-url URL]
"""

from __future__ import annotations

import argparse
import sys

from prefect import flow
from prefect.blocks.system import Secret

from blocks.ledger import open_ledger
from headwater.batch import BatchRequest
from headwater.cli import run_flow_cli
from headwater.logs import run_logger
from headwater.outcome import RunResult
from headwater.params import FLOW_TIMEOUT_S, check_positive_ints, check_url, parse_positive_ints
from headwater.settings import get_settings
from headwater.sources.openaq import DEFAULT_BASE_URL, OPENAQ, fetch_measurements, location_set_name
from tasks.fetch import run_api_batch


def api_key(block: str) -> str | None:
    """The OpenAQ API key from its Secret block, or None (with a warning) when there is none."""
    try:
        value = Secret.load(block).get()  # type: ignore[union-attr]
    except ValueError:
        run_logger().warning("no Secret block %r: requests go without an API key", block)
        return None
    return str(value)


@flow(name="ingest-openaq", flow_run_name="openaq {location_set}", timeout_seconds=FLOW_TIMEOUT_S)
def ingest_openaq(
    locations: list[int] | None = None, location_set: str | None = None, base_url: str | None = None
) -> RunResult:
    """Fetch measurements newer than each sensor's cursor, quarantine out-of-range values, merge the rest.

    A second run fetches only what is newer (``datetime_from`` = the cursor) and adds no
    duplicate: the table is a ReplacingMergeTree on (sensor_id, datetime_from).
    """
    settings = get_settings()
    chosen = check_positive_ints("openaq", "locations", locations or settings.openaq_locations)
    name = location_set or location_set_name(chosen)
    url = check_url(f"openaq-{name}", "base_url", base_url or settings.openaq_base_url or DEFAULT_BASE_URL)
    request = BatchRequest(
        source=OPENAQ,
        instance=f"openaq-{name}",
        partition={"location_set": name},
        database=settings.openaq_database,
        location=url,
    )
    with open_ledger() as ledger:
        cursors = ledger.all_state(request.instance)
    key = api_key(settings.openaq_api_key_block)
    return run_api_batch(request, lambda: fetch_measurements(request.label, url, chosen, cursors, key))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m flows.openaq", description=__doc__.splitlines()[0])
    parser.add_argument("--locations", default=None, help="comma-separated OpenAQ location ids")
    parser.add_argument("--base-url", default=None)
    args = parser.parse_args(argv)
    return run_flow_cli(
        lambda: ingest_openaq(
            parse_positive_ints("openaq", "--locations", args.locations) if args.locations else None,
            base_url=args.base_url,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
