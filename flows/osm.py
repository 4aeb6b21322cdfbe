"""Ingest OpenStreetMap layers of an area.

python -m flows.osm [--area BJ] [--layers buildings,landuse,amenities] [--geometry center|geom] [--meta] [--timeout 600]
"""

import sys

from flows.factory import source_flow
from headwater.cli import source_command
from headwater.sources.osm import OSM

ingest_osm = source_flow(OSM, __name__)
main = source_command(OSM, ingest_osm)

if __name__ == "__main__":
    sys.exit(main())
