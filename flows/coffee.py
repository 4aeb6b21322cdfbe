"""Ingest arabica coffee futures prices into ClickHouse (``markets.coffee_prices``) via Yahoo → Stooq → ICO static.

python -m flows.coffee [--symbol KC] [--yahoo-url URL] [--stooq-url URL]
"""

from __future__ import annotations

import argparse
import sys

from prefect import flow

from headwater.batch import BatchRequest
from headwater.cli import run_flow_cli
from headwater.errors import ConfigurationError
from headwater.outcome import RunResult
from headwater.params import FLOW_TIMEOUT_S, check_non_negative, check_url
from headwater.settings import get_settings
from headwater.sources.coffee import (
    COFFEE,
    DEFAULT_SYMBOL,
    STOOQ_BASE_URL,
    STOOQ_TICKERS,
    YAHOO_BASE_URL,
    YAHOO_TICKERS,
    fetch_prices,
)
from tasks.fetch import run_api_batch


def instance_name(symbol: str) -> str:
    """The instance (and deployment) name: ``coffee-prices`` for KC, ``coffee-prices-<symbol>`` otherwise."""
    return "coffee-prices" if symbol == DEFAULT_SYMBOL else f"coffee-prices-{symbol.lower()}"


@flow(name="ingest-coffee", flow_run_name="coffee {symbol}", timeout_seconds=FLOW_TIMEOUT_S)
def ingest_coffee(
    symbol: str = DEFAULT_SYMBOL,
    yahoo_url: str | None = None,
    stooq_url: str | None = None,
    tolerance: float | None = None,
) -> RunResult:
    """Fetch the last sessions' coffee prices from the first provider that answers and merge them into the history.

    Yahoo first, then Stooq; when both fail, one row for today carries the static ICO
    composite benchmark, marked ``is_fallback`` with its ``fallback_as_of`` date. Failed
    providers and any disagreement between Yahoo and Stooq are in the run's notes.
    ``symbol`` is the partition.
    """
    settings = get_settings()
    if symbol not in YAHOO_TICKERS or symbol not in STOOQ_TICKERS:
        raise ConfigurationError("coffee", f"expected a symbol in {', '.join(sorted(YAHOO_TICKERS))}, found {symbol!r}")
    label = instance_name(symbol)
    urls = {
        "yahoo": check_url(label, "yahoo_url", yahoo_url or settings.yahoo_base_url or YAHOO_BASE_URL),
        "stooq": check_url(label, "stooq_url", stooq_url or settings.stooq_base_url or STOOQ_BASE_URL),
    }
    chosen_tolerance = check_non_negative(
        label, "tolerance", settings.provider_disagreement_tolerance if tolerance is None else tolerance
    )
    request = BatchRequest(
        source=COFFEE,
        instance=instance_name(symbol),
        partition={"symbol": symbol},
        database=settings.markets_database,
        location=urls["yahoo"],
    )
    return run_api_batch(
        request,
        lambda: fetch_prices(request.label, urls, tolerance=chosen_tolerance, symbol=symbol, instance=request.instance),
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m flows.coffee", description=__doc__.splitlines()[0])
    parser.add_argument("--symbol", default=DEFAULT_SYMBOL, choices=sorted(YAHOO_TICKERS))
    parser.add_argument("--yahoo-url", default=None)
    parser.add_argument("--stooq-url", default=None)
    args = parser.parse_args(argv)
    return run_flow_cli(lambda: ingest_coffee(args.symbol, yahoo_url=args.yahoo_url, stooq_url=args.stooq_url))


if __name__ == "__main__":
    sys.exit(main())
