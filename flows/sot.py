"""Ingest one SOT daily export (one network, one processing date) into ClickHouse.

Command line (the contract's interface)::

    python -m flows.sot --network ethereum --date 2026-11-22 --base-url http://127.0.0.1:8000/exports

exits 0 when the export was loaded or was already loaded unchanged, 2 with a one-line
reason on stderr when a parameter is wrong (nothing is fetched), and 1 with a one-line
reason when it failed or was skipped because the source's circuit is open.
"""

import sys

from flows.factory import source_flow
from headwater.cli import source_command
from headwater.sources.sot.contract import SOT

ingest_sot = source_flow(SOT, __name__)
main = source_command(SOT, ingest_sot)

if __name__ == "__main__":
    sys.exit(main())
