"""Ingest FAOSTAT production of one area.

python -m flows.faostat [--area 53] [--elements 2312,2413] [--items CODES] [--years 2020,2021] [--base-url URL]
"""

import sys

from flows.factory import source_flow
from headwater.cli import source_command
from headwater.sources.faostat import FAOSTAT

ingest_faostat = source_flow(FAOSTAT, __name__)
main = source_command(FAOSTAT, ingest_faostat)

if __name__ == "__main__":
    sys.exit(main())
