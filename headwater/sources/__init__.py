"""Source specs: what each source publishes. The pipeline itself is shared."""

from __future__ import annotations

from headwater.filedrop import load_config, source_spec
from headwater.settings import Settings, get_settings
from headwater.sources.catalog import CATALOG_FEED, CATALOG_REGISTRY, CATALOG_VECTORS, catalog_database
from headwater.sources.coffee import COFFEE
from headwater.sources.faostat import FAOSTAT
from headwater.sources.fx import FX
from headwater.sources.ilostat import ILOSTAT
from headwater.sources.open_meteo import OPEN_METEO
from headwater.sources.openaq import OPENAQ
from headwater.sources.osm import OSM
from headwater.sources.sot.contract import SOT
from headwater.sources.worldbank import WORLDBANK
from headwater.spec import DeclaredSource, SourceSpec

DECLARED: tuple[DeclaredSource, ...] = (SOT, WORLDBANK, FAOSTAT, ILOSTAT, OSM, OPEN_METEO, OPENAQ, FX, COFFEE)
"""Every source declared in code (``headwater/sources/<name>.py``), in the order health lists them."""


def registered_sources(settings: Settings | None = None) -> list[tuple[SourceSpec, str]]:
    """Every source Headwater ingests, with the ClickHouse database it loads into.

    The declared sources, the catalog's three stages, and the file-drop sources.
    """
    settings = settings or get_settings()
    return [
        *((source, source.database_in(settings)) for source in DECLARED),
        *((stage, catalog_database(settings)) for stage in (CATALOG_REGISTRY, CATALOG_FEED, CATALOG_VECTORS)),
        *((source_spec(s), s.database) for s in load_config(settings.file_sources_path).values()),
    ]
