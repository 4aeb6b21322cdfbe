"""Ingest coffee futures prices: ``python -m flows.coffee [--symbol KC] [--yahoo-url URL] [--stooq-url URL]``."""

import sys

from flows.factory import source_flow
from headwater.cli import source_command
from headwater.sources.coffee import COFFEE

ingest_coffee = source_flow(COFFEE, __name__)
main = source_command(COFFEE, ingest_coffee)

if __name__ == "__main__":
    sys.exit(main())
