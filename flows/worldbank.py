"""Ingest World Bank indicators of one vertical.

python -m flows.worldbank --vertical agriculture [--countries BEN,TGO] [--indicators IDS] [--base-url URL]
"""

import sys

from flows.factory import source_flow
from headwater.cli import source_command
from headwater.sources.worldbank import WORLDBANK

ingest_worldbank = source_flow(WORLDBANK, __name__)
main = source_command(WORLDBANK, ingest_worldbank)

if __name__ == "__main__":
    sys.exit(main())
