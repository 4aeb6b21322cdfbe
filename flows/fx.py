"""Ingest the latest FX reference rates.

python -m flows.fx [--base EUR] [--ecb-url URL] [--frankfurter-url URL] [--erapi-url URL] [--tolerance X]
"""

import sys

from flows.factory import source_flow
from headwater.cli import source_command
from headwater.sources.fx import FX

ingest_fx = source_flow(FX, __name__)
main = source_command(FX, ingest_fx)

if __name__ == "__main__":
    sys.exit(main())
