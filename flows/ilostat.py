"""Ingest one ILOSTAT dataset: ``python -m flows.ilostat --indicator UNE_DEAP_SEX_AGE_RT_A [--ref-areas BEN,TGO]``."""

import sys

from flows.factory import source_flow
from headwater.cli import source_command
from headwater.sources.ilostat import ILOSTAT

ingest_ilostat = source_flow(ILOSTAT, __name__)
main = source_command(ILOSTAT, ingest_ilostat)

if __name__ == "__main__":
    sys.exit(main())
