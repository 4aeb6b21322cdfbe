"""Ingest new OpenAQ measurements (incremental, every 2 hours): ``python -m flows.openaq [--locations 2178,8118]``."""

import sys

from flows.factory import source_flow
from headwater.cli import source_command
from headwater.sources.openaq import OPENAQ

ingest_openaq = source_flow(OPENAQ, __name__)
main = source_command(OPENAQ, ingest_openaq)

if __name__ == "__main__":
    sys.exit(main())
