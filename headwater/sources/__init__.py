"""Source specs: what each source publishes. The pipeline itself is shared."""

from __future__ import annotations

from headwater.filedrop import load_config, source_spec
from headwater.settings import Settings, get_settings
from headwater.sources.coffee import COFFEE
from headwater.sources.faostat import FAOSTAT
from headwater.sources.fx import FX
from headwater.sources.ilostat import ILOSTAT
from headwater.sources.open_meteo import OPEN_METEO
from headwater.sources.openaq import OPENAQ
from headwater.sources.osm import OSM
from headwater.sources.sot.contract import SOT
from headwater.sources.worldbank import WORLDBANK
from headwater.spec import SourceSpec


def registered_sources(settings: Settings | None = None) -> list[tuple[SourceSpec, str]]:
    """Every source Headwater ingests, with the ClickHouse database it loads into."""
    settings = settings or get_settings()
    return [
        (SOT, settings.sot_database),
        (WORLDBANK, settings.worldbank_database),
        (FAOSTAT, settings.faostat_database),
        (ILOSTAT, settings.ilostat_database),
        (OSM, settings.osm_database),
        (OPEN_METEO, settings.open_meteo_database),
        (OPENAQ, settings.openaq_database),
        (FX, settings.fx_database),
        (COFFEE, settings.markets_database),
        *((source_spec(s), s.database) for s in load_config(settings.file_sources_path).values()),
    ]
