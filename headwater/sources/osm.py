"""OpenStreetMap through the Overpass API: buildings, land use and amenities of an area.

One query per layer, sent as ``GET {interpreter}?data=<Overpass QL>`` (the interpreter
takes the query as the ``data`` parameter of a GET as well as of a form POST)::

    [out:json][timeout:600];
    area["ISO3166-1"="BJ"][admin_level=2]->.a;
    nwr["building"](area.a);
    out center tags;

The answer is one JSON document ``{"version", "generator", "osm3s", "elements": [...]}``
(no pages: Overpass does not paginate, a query returns its whole result or fails).
Elements are nodes (``lat``/``lon``), ways and relations; with ``out center`` ways and
relations carry ``center`` (the centre of their bounding box), with ``out geom`` they
carry ``bounds`` and the member coordinates (``geometry`` of a way, ``geometry`` or
``lat``/``lon`` of each relation member) instead. With ``out meta`` every element also
has ``version``, ``timestamp``, ``changeset``, ``user`` and ``uid``.

A failed query still answers HTTP 200 with whatever elements it had (often none) and a
``remark`` such as ``runtime error: Query timed out in "query" at line 4 after 2
seconds.``; that is a server-side failure, never an empty result, and raises FetchError.

Untagged elements (the bare nodes a ``>;`` recursion adds for a way's geometry) are not
features and are dropped (the count is logged).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any

import pandera.polars as pa
import polars as pl
from pydantic import Field, field_validator

from headwater.bodies import json_body
from headwater.errors import FetchError
from headwater.http import get, make_client
from headwater.logs import run_logger
from headwater.params import PositiveInt, one_of
from headwater.spec import ApiCall, ApiSource, SourceParams, UrlParam
from headwater.tables import TableSpec

DEFAULT_BASE_URL = "https://overpass-api.de/api/interpreter"
DEFAULT_AREA = "BJ"  # Benin, by its ISO 3166-1 code
DEFAULT_TIMEOUT_S = 600
# Layer (= table) → the OSM key whose presence selects its features.
LAYERS: dict[str, str] = {"buildings": "building", "landuse": "landuse", "amenities": "amenity"}
GEOMETRIES = ("center", "geom")
ELEMENT_TYPES = ("node", "way", "relation")
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

_ISO_CODE = re.compile(r"^[A-Za-z]{2}$")
_AREA_ID = re.compile(r"^\d+$")


class OsmFeature(pa.DataFrameModel):
    """Columns of every layer table: the element, where it is, its tags and meta."""

    area: str = pa.Field(str_length={"min_value": 1})
    element_type: str = pa.Field(isin=list(ELEMENT_TYPES))
    element_id: int = pa.Field(ge=1)
    name: str = pa.Field(nullable=True)
    lat: float = pa.Field(ge=-90, le=90, nullable=True)
    lon: float = pa.Field(ge=-180, le=180, nullable=True)
    min_lat: float = pa.Field(ge=-90, le=90, nullable=True)
    min_lon: float = pa.Field(ge=-180, le=180, nullable=True)
    max_lat: float = pa.Field(ge=-90, le=90, nullable=True)
    max_lon: float = pa.Field(ge=-180, le=180, nullable=True)
    geometry: str = pa.Field(nullable=True)
    members: str = pa.Field(nullable=True)
    tags: str = pa.Field(str_startswith="{")
    version: int = pa.Field(ge=1, nullable=True)
    timestamp: Annotated[pl.Datetime, "ms", "UTC"] = pa.Field(nullable=True)
    changeset: int = pa.Field(ge=0, nullable=True)
    user: str = pa.Field(nullable=True)
    uid: int = pa.Field(ge=0, nullable=True)

    class Config:
        strict = True
        coerce = True


class Buildings(OsmFeature):
    """``osm.buildings``: one row per tagged element with a ``building`` key, per area."""

    building: str = pa.Field(nullable=True)


class Landuse(OsmFeature):
    """``osm.landuse``: one row per tagged element with a ``landuse`` key, per area."""

    landuse: str = pa.Field(nullable=True)


class Amenities(OsmFeature):
    """``osm.amenities``: one row per tagged element with an ``amenity`` key, per area."""

    amenity: str = pa.Field(nullable=True)


_KEY = ("element_type", "element_id")

LAYER_TABLES = {
    "buildings": TableSpec("buildings", Buildings, key=_KEY),
    "landuse": TableSpec("landuse", Landuse, key=_KEY),
    "amenities": TableSpec("amenities", Amenities, key=_KEY),
}


def normalise_area(area: str) -> str | None:
    """The area as the partition value (``BJ``, ``3600192784``); None when it is neither form."""
    value = area.strip()
    if _ISO_CODE.match(value):
        return value.upper()
    if _AREA_ID.match(value):
        return value
    return None


def area_statement(area: str) -> str:
    """The Overpass QL statement that puts the area into set ``.a``.

    An ISO 3166-1 alpha-2 code selects the country's boundary area; digits are an
    Overpass area id (a relation's id + 3600000000, a way's + 2400000000).
    """
    if _AREA_ID.match(area):
        return f"area({area})->.a;"
    return f'area["ISO3166-1"="{area}"][admin_level=2]->.a;'


def layer_query(
    area: str, layer: str, timeout_s: int = DEFAULT_TIMEOUT_S, geometry: str = "center", meta: bool = False
) -> str:
    """The Overpass QL query of one layer of an area.

    ``out center tags`` (default): coordinates of nodes, centres of ways and relations, tags.
    ``out geom body``: coordinates of every way node and relation member, with bounds.
    ``meta`` replaces the verbosity with ``meta`` (body plus version, timestamp, user).
    """
    verbosity = "meta" if meta else ("tags" if geometry == "center" else "body")
    return "\n".join(
        (
            f"[out:json][timeout:{timeout_s}];",
            area_statement(area),
            f'nwr["{LAYERS[layer]}"](area.a);',
            f"out {geometry} {verbosity};",
        )
    )


def parse_response(source: str, url: str, body: Any) -> list[dict[str, Any]]:
    """The elements of one Overpass answer; a ``remark`` (server-side failure) raises FetchError."""
    if not (isinstance(body, dict) and isinstance(body.get("elements"), list)):
        raise FetchError(source, url, f"expected an Overpass JSON document with 'elements', found {str(body)[:200]!r}")
    remark = body.get("remark")
    if remark:
        raise FetchError(source, url, f"Overpass API remark (the query failed on the server): {remark}")
    return list(body["elements"])


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _position(point: Any) -> list[float] | None:
    """A GeoJSON position ``[lon, lat]`` of ``{"lat", "lon"}``; None for Overpass's ``null``."""
    if not isinstance(point, dict) or point.get("lat") is None or point.get("lon") is None:
        return None
    return [float(point["lon"]), float(point["lat"])]


def _line(points: list[Any]) -> dict[str, Any] | None:
    """A way's coordinates as a GeoJSON Polygon when closed, else a LineString.

    Positions Overpass prints as ``null`` (nodes it could not place) are left out.
    """
    positions = [p for p in (_position(point) for point in points) if p is not None]
    if len(positions) >= 4 and positions[0] == positions[-1]:
        return {"type": "Polygon", "coordinates": [positions]}
    if len(positions) >= 2:
        return {"type": "LineString", "coordinates": positions}
    return None


def element_geometry(element: dict[str, Any]) -> str | None:
    """The element's GeoJSON geometry as far as the output carries it, else None.

    A node is a Point; a way with ``geometry`` (``out geom``) a Polygon when closed, else
    a LineString; a relation with member coordinates a GeometryCollection of its members'
    geometries in member order (rings are not assembled into multipolygons; the roles
    are in ``members``). ``out center`` carries no way or relation geometry.
    """
    kind = element["type"]
    if kind == "node":
        position = _position(element)
        return _json({"type": "Point", "coordinates": position}) if position else None
    if kind == "way":
        line = _line(element.get("geometry") or [])
        return _json(line) if line else None
    parts: list[dict[str, Any]] = []
    for member in element.get("members") or []:
        if member.get("geometry"):
            line = _line(member["geometry"])
            if line:
                parts.append(line)
        elif (position := _position(member)) is not None:
            parts.append({"type": "Point", "coordinates": position})
    return _json({"type": "GeometryCollection", "geometries": parts}) if parts else None


def _bounds(element: dict[str, Any]) -> tuple[float | None, float | None, float | None, float | None]:
    bounds = element.get("bounds")
    names = ("minlat", "minlon", "maxlat", "maxlon")
    if not isinstance(bounds, dict) or any(bounds.get(n) is None for n in names):
        return None, None, None, None
    south, west, north, east = (float(bounds[n]) for n in names)
    return south, west, north, east


def _point(element: dict[str, Any], bounds: tuple[float | None, ...]) -> tuple[float | None, float | None]:
    """A node's coordinates, else the ``center``, else the centre of ``bounds`` (what ``center`` is)."""
    if element["type"] == "node":
        found = _position(element)
    else:
        found = _position(element.get("center"))
        if found is None and None not in bounds:
            south, west, north, east = (float(b) for b in bounds if b is not None)
            found = [round((west + east) / 2, 7), round((south + north) / 2, 7)]  # Overpass prints 7 decimals
    return (found[1], found[0]) if found else (None, None)


def _timestamp(value: Any) -> datetime | None:
    return datetime.strptime(value, TIMESTAMP_FORMAT).replace(tzinfo=UTC) if value else None


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def to_rows(
    source: str, url: str, area: str, layer: str, elements: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], int]:
    """Feature rows of a layer's elements and how many untagged elements were dropped."""
    rows: list[dict[str, Any]] = []
    dropped = 0
    key = LAYERS[layer]
    for element in elements:
        kind = element.get("type")
        if kind not in ELEMENT_TYPES or not isinstance(element.get("id"), int):
            raise FetchError(
                source, url, f"expected node, way or relation elements with an id, found {str(element)[:200]!r}"
            )
        tags = element.get("tags") or {}
        if not tags:
            dropped += 1
            continue
        bounds = _bounds(element)
        lat, lon = _point(element, bounds)
        members = element.get("members") if kind == "relation" else None
        rows.append(
            {
                "area": area,
                "element_type": kind,
                "element_id": element["id"],
                key: tags.get(key),
                "name": tags.get("name"),
                "lat": lat,
                "lon": lon,
                "min_lat": bounds[0],
                "min_lon": bounds[1],
                "max_lat": bounds[2],
                "max_lon": bounds[3],
                "geometry": element_geometry(element),
                "members": _json([{k: m.get(k) for k in ("type", "ref", "role")} for m in members])
                if members is not None
                else None,
                "tags": _json(tags),
                "version": _int(element.get("version")),
                "timestamp": _timestamp(element.get("timestamp")),
                "changeset": _int(element.get("changeset")),
                "user": element.get("user"),
                "uid": _int(element.get("uid")),
            }
        )
    return rows, dropped


def to_frame(layer: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    """A layer's rows as its table's frame."""
    return LAYER_TABLES[layer].frame(rows)


def fetch_layers(
    source: str,
    base_url: str,
    area: str,
    layers: tuple[str, ...],
    timeout_s: int = DEFAULT_TIMEOUT_S,
    geometry: str = "center",
    meta: bool = False,
) -> dict[str, pl.DataFrame]:
    """One Overpass query per layer of the area, as ``{layer: frame}``."""
    logger = run_logger()
    frames: dict[str, pl.DataFrame] = {}
    # Overpass may send nothing until the query has run: a read waits for the
    # server-side timeout (plus a margin), not just the usual per-request timeout.
    with make_client(read_timeout_s=timeout_s + 60.0) as client:
        for layer in layers:
            query = layer_query(area, layer, timeout_s, geometry, meta)
            response = get(source, base_url, params={"data": query}, client=client)
            url = str(response.url)
            body = json_body(source, response, "Overpass JSON")
            rows, dropped = to_rows(source, url, area, layer, parse_response(source, url, body))
            if dropped:
                logger.info("%s %s: dropped %s untagged element(s) (members, not features)", source, layer, dropped)
            logger.info("%s %s: %s feature(s)", source, layer, len(rows))
            frames[layer] = to_frame(layer, rows)
    return frames


class OsmParams(SourceParams):
    """Query each layer of the area on Overpass and replace the area's partition of its table.

    The area (ISO 3166-1 code such as ``BJ``, or an Overpass area id) is the partition:
    each run is a full snapshot of its layers, so a rerun on the same responses is
    ``unchanged`` and adds no rows. Layers not asked for are left as they are; a subset
    of layers is its own instance (``osm-bj-amenities``).
    """

    area: str = Field(default=DEFAULT_AREA, description="ISO 3166-1 code or Overpass area id")
    layers: list[str] | None = Field(default=None, description=f"layers, of {', '.join(LAYERS)} (default all)")
    base_url: str | None = Field(default=None, description="Overpass interpreter URL (default: the public one)")
    geometry: str = Field(default="center", description=f"output geometry, {' or '.join(GEOMETRIES)}")
    meta: bool = Field(default=False, description="also version, timestamp, changeset and user")
    timeout_s: PositiveInt = Field(
        default=DEFAULT_TIMEOUT_S,
        description="Overpass query timeout, seconds",
        json_schema_extra={"flag": "--timeout"},
    )

    @field_validator("area")
    @classmethod
    def _area(cls, value: str) -> str:
        normalised = normalise_area(value)
        if normalised is None:
            raise ValueError(f"expected an ISO 3166-1 alpha-2 code or an Overpass area id, found {value!r}")
        return normalised

    @field_validator("layers")
    @classmethod
    def _layers(cls, value: list[str] | None) -> list[str] | None:
        unknown = [layer for layer in value or () if layer not in LAYERS]
        if unknown:
            raise ValueError(f"expected layers in {', '.join(LAYERS)}, found {', '.join(unknown)}")
        return value

    @field_validator("geometry")
    @classmethod
    def _geometry(cls, value: str) -> str:
        return one_of("geometry", value, GEOMETRIES)

    @property
    def chosen_layers(self) -> tuple[str, ...]:
        """The layers asked for, in contract order (one instance per subset)."""
        return tuple(layer for layer in LAYERS if layer in (self.layers or LAYERS))

    @property
    def instance_key(self) -> str:
        """``bj`` for every layer of the area, ``bj-amenities`` for a subset."""
        name = normalise_area(self.area) or self.area
        chosen = self.chosen_layers
        return "-".join([name.lower(), *(() if set(chosen) == set(LAYERS) else chosen)])

    @property
    def excluded_tables(self) -> frozenset[str]:
        """The layers not asked for."""
        return frozenset(LAYERS) - set(self.chosen_layers)


def fetch(call: ApiCall[OsmParams]) -> dict[str, pl.DataFrame]:
    """The run's batch: one Overpass query per chosen layer."""
    p = call.params
    return fetch_layers(call.label, call.url, p.area, p.chosen_layers, p.timeout_s, p.geometry, p.meta)


OSM = ApiSource(
    name="osm",
    title="OpenStreetMap",
    flow_name="ingest-osm",
    run_name="osm {area}",
    summary="Ingest OpenStreetMap buildings, land use and amenities of an area into ClickHouse (osm.*).",
    database="osm",
    params=OsmParams,
    instance="osm-{instance_key}",
    urls=(UrlParam("base_url", "osm", DEFAULT_BASE_URL, rate_limit=0.5),),
    partition_columns=("area",),
    tables=LAYER_TABLES,
    fetch=fetch,
)
