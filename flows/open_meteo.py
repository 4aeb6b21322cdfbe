"""Ingest Open-Meteo forecasts of a region set.

python -m flows.open_meteo [--region-set peru-coffee] [--regions JSON] [--forecast-hours 48] [--base-url URL]
"""

import sys

from flows.factory import source_flow
from headwater.cli import source_command
from headwater.sources.open_meteo import OPEN_METEO

ingest_open_meteo = source_flow(OPEN_METEO, __name__)
main = source_command(OPEN_METEO, ingest_open_meteo)

if __name__ == "__main__":
    sys.exit(main())
