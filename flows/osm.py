"""Ingest OpenStreetMap buildings, land use and amenities of an area into ClickHouse (``osm.*``).

python -m flows.osm [--area BJ] [--layers buildings,landuse,amenities] [--geometry center|geom] [--meta]
[--timeout 600] [--base-url URL]
"""

from __future__ import annotations

import argparse
import sys

from prefect import flow

from headwater.batch import BatchRequest
from headwater.cli import run_flow_cli
from headwater.errors import ConfigurationError
from headwater.outcome import RunResult
from headwater.params import FLOW_TIMEOUT_S, check_positive, check_url
from headwater.settings import get_settings
from headwater.sources.osm import (
    DEFAULT_AREA,
    DEFAULT_BASE_URL,
    DEFAULT_TIMEOUT_S,
    GEOMETRIES,
    LAYERS,
    OSM,
    fetch_layers,
    normalise_area,
)
from tasks.fetch import run_api_batch


def osm_instance(area: str, layers: tuple[str, ...]) -> str:
    """``osm-bj`` for every layer of the area, ``osm-bj-amenities`` for a subset."""
    name = f"osm-{area.lower()}"
    return name if set(layers) == set(LAYERS) else "-".join([name, *layers])


@flow(name="ingest-osm", flow_run_name="osm {area}", timeout_seconds=FLOW_TIMEOUT_S)
def ingest_osm(
    area: str = DEFAULT_AREA,
    layers: list[str] | None = None,
    base_url: str | None = None,
    geometry: str = "center",
    meta: bool = False,
    timeout_s: int = DEFAULT_TIMEOUT_S,
) -> RunResult:
    """Query each layer of the area on Overpass and replace the area's partition of its table.

    The area (ISO 3166-1 code such as ``BJ``, or an Overpass area id) is the partition:
    each run is a full snapshot of its layers, so a rerun on the same responses is
    ``unchanged`` and adds no rows. Layers not asked for are left as they are.
    """
    settings = get_settings()
    value = normalise_area(area)
    requested = list(layers or LAYERS)
    label = f"osm-{area}"
    if value is None:
        raise ConfigurationError(label, f"expected an ISO 3166-1 alpha-2 code or an Overpass area id, found {area!r}")
    unknown = [layer for layer in requested if layer not in LAYERS]
    if unknown:
        raise ConfigurationError(label, f"expected layers in {', '.join(LAYERS)}, found {', '.join(unknown)}")
    chosen = tuple(layer for layer in LAYERS if layer in requested)  # contract order: one instance per subset
    if geometry not in GEOMETRIES:
        raise ConfigurationError(label, f"expected geometry in {', '.join(GEOMETRIES)}, found {geometry!r}")
    check_positive(label, "timeout_s", timeout_s)
    url = check_url(label, "base_url", base_url or settings.osm_base_url or DEFAULT_BASE_URL)
    request = BatchRequest(
        source=OSM,
        instance=osm_instance(value, chosen),
        partition={"area": value},
        database=settings.osm_database,
        excluded_tables=frozenset(LAYERS) - set(chosen),
        location=url,
    )
    return run_api_batch(request, lambda: fetch_layers(request.label, url, value, chosen, timeout_s, geometry, meta))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m flows.osm", description=__doc__.splitlines()[0])
    parser.add_argument("--area", default=DEFAULT_AREA, help="ISO 3166-1 code or Overpass area id (default BJ)")
    parser.add_argument("--layers", default=None, help=f"comma-separated, of {','.join(LAYERS)} (default all)")
    parser.add_argument("--geometry", default="center", choices=GEOMETRIES)
    parser.add_argument("--meta", action="store_true", help="also version, timestamp, changeset and user")
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S, help="Overpass query timeout, seconds")
    parser.add_argument("--base-url", default=None)
    args = parser.parse_args(argv)
    layers = args.layers.split(",") if args.layers else None
    return run_flow_cli(lambda: ingest_osm(args.area, layers, args.base_url, args.geometry, args.meta, args.timeout))


if __name__ == "__main__":
    sys.exit(main())
