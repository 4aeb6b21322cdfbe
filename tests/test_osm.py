"""OpenStreetMap (Overpass API) against recorded responses served on loopback.

Each layer's query is matched exactly (path and the ``data`` parameter), so a test also
proves which Overpass QL was sent. No landuse response was recorded: where a test needs
the landuse layer it is answered with a recorded relation (a road route), whose
``landuse`` is then null.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from flows.osm import ingest_osm
from headwater.errors import ConfigurationError, FetchError
from headwater.sources.osm import LAYERS, layer_query, parse_response, to_rows
from tests.helpers import ledger_runs, query
from tests.recorded import fixture_bytes, fixture_json

PATH = "/api/interpreter"
CAFES = "overpass/overpass-wrapper_example_singlenode_cafes.json"
WAY = "overpass/overpy_way-03.json"
RELATION_CENTER = "overpass/overpy_relation-03.json"
RELATION_GEOM = "overpass/overpy_relation-04.json"
BODY_GEOM = "overpass/overpass-wrapper_example_body_geom.json"
REMARK = "overpass/overpy_remark-runtime-error-01.json"


def serve(httpserver: HTTPServer, layer: str, fixture: str, area: str = "BJ", **query: Any) -> None:
    """Answer exactly the query of ``layer`` with a recorded body."""
    httpserver.expect_request(PATH, query_string={"data": layer_query(area, layer, **query)}).respond_with_data(
        fixture_bytes(fixture), content_type="application/json"
    )


def run(httpserver: HTTPServer, layers: list[str] | None, **kwargs: Any) -> Any:
    return ingest_osm("BJ", layers, base_url=httpserver.url_for(PATH), **kwargs)


def osm_tables() -> set[str]:
    return {r[0] for r in query("SELECT name FROM system.tables WHERE database = 'osm'")}


def test_queries_select_the_layer_in_the_area() -> None:
    assert layer_query("BJ", "buildings", 600) == (
        '[out:json][timeout:600];\narea["ISO3166-1"="BJ"][admin_level=2]->.a;\nnwr["building"](area.a);\n'
        "out center tags;"
    )
    assert layer_query("3600192784", "amenities", 900, "geom", meta=True).splitlines()[1:] == [
        "area(3600192784)->.a;",
        'nwr["amenity"](area.a);',
        "out geom meta;",
    ]
    assert layer_query("BJ", "landuse", geometry="geom").endswith('nwr["landuse"](area.a);\nout geom body;')


def test_cafes_rows_and_types(home: Any, httpserver: HTTPServer) -> None:
    serve(httpserver, "amenities", CAFES)
    outcome = run(httpserver, ["amenities"])
    elements = fixture_json(CAFES)["elements"]
    assert outcome.status == "loaded"
    assert outcome.rows_by_table == {"amenities": len(elements)} == {"amenities": 103}
    assert query("SELECT DISTINCT element_type, amenity, area FROM osm.amenities") == [("node", "cafe", "BJ")]
    assert query("SELECT count() FROM osm.amenities WHERE name IS NOT NULL")[0][0] == sum(
        1 for e in elements if "name" in e["tags"]
    )
    first = elements[0]
    assert (first["id"], first["tags"]["name"]) == (830609255, "Café Sincera")
    row = query(
        "SELECT name, lat, lon, tags, geometry, min_lat, version, timestamp FROM osm.amenities "
        "WHERE element_type = 'node' AND element_id = 830609255"
    )[0]
    assert row[:3] == ("Café Sincera", first["lat"], first["lon"]) == ("Café Sincera", -15.7526149, -47.8900512)
    assert json.loads(row[3]) == first["tags"]
    assert row[3] == '{"amenity":"cafe","name":"Café Sincera","smoking":"no"}'  # sorted keys, compact
    assert json.loads(row[4]) == {"type": "Point", "coordinates": [-47.8900512, -15.7526149]}
    assert row[5:] == (None, None, None)  # no bounds with out center, no meta with out tags
    types = dict(query("SELECT name, type FROM system.columns WHERE database = 'osm' AND table = 'amenities'"))
    assert (types["lat"], types["lon"], types["element_id"], types["element_type"]) == (
        "Nullable(Float64)",
        "Nullable(Float64)",
        "Int64",
        "String",
    )
    assert (types["amenity"], types["tags"], types["timestamp"]) == (
        "Nullable(String)",
        "String",
        "Nullable(DateTime64(3, 'UTC'))",
    )
    assert osm_tables() == {"amenities"}  # layers not asked for are not touched
    [request] = [r for r, _ in httpserver.log]
    assert 'nwr["amenity"](area.a);' in request.args["data"]


def test_way_center_and_meta_bare_member_nodes_dropped(home: Any, httpserver: HTTPServer) -> None:
    serve(httpserver, "buildings", WAY, meta=True)
    outcome = run(httpserver, ["buildings"], meta=True)
    assert outcome.rows_by_table == {"buildings": 1}
    row = query(
        "SELECT element_type, element_id, building, name, lat, lon, tags, geometry, version, toString(timestamp), "
        "changeset, user, uid FROM osm.buildings"
    )
    assert row == [
        (
            "way",
            225576797,
            "kiosk",
            None,
            41.8954998,
            12.5032265,
            '{"building":"kiosk","shop":"florist"}',
            None,  # out center: no way geometry
            1,
            "2013-06-13 15:34:01.000",  # UTC
            16539126,
            "Giardia",
            113909,
        )
    ]
    # the four untagged nodes are only the way's members: not features
    elements = fixture_json(WAY)["elements"]
    rows, dropped = to_rows("osm-bj", "url", "BJ", "buildings", elements)
    assert (len(rows), dropped) == (1, 4)
    assert sum(1 for e in elements if e["type"] == "node" and "tags" not in e) == 4


def test_relation_geom_parses_and_matches_its_center(home: Any, httpserver: HTTPServer) -> None:
    serve(httpserver, "landuse", RELATION_GEOM, geometry="geom")
    outcome = run(httpserver, ["landuse"], geometry="geom")
    assert outcome.rows_by_table == {"landuse": 1}
    row = query(
        "SELECT element_type, element_id, landuse, name, lat, lon, min_lat, min_lon, max_lat, max_lon, "
        "geometry, members FROM osm.landuse"
    )[0]
    relation = fixture_json(RELATION_GEOM)["elements"][0]
    assert row[:4] == ("relation", 23092, None, "Bundesautobahn 555")  # a route: no landuse tag
    bounds = relation["bounds"]
    assert row[6:10] == (bounds["minlat"], bounds["minlon"], bounds["maxlat"], bounds["maxlon"])
    # out geom has no center; the bounds' centre is what out center answers (relation-03, same relation)
    center = fixture_json(RELATION_CENTER)["elements"][0]["center"]
    assert row[4] == pytest.approx(center["lat"], abs=1e-7)
    assert row[5] == pytest.approx(center["lon"], abs=1e-7)
    geometry = json.loads(row[10])
    assert geometry["type"] == "GeometryCollection"
    assert len(geometry["geometries"]) == len(relation["members"]) == 133
    first = relation["members"][0]["geometry"]
    assert geometry["geometries"][0] == {"type": "LineString", "coordinates": [[p["lon"], p["lat"]] for p in first]}
    assert json.loads(row[11])[0] == {"type": "way", "ref": 4334856, "role": ""}


def test_body_geom_way_and_multipolygon(home: Any, httpserver: HTTPServer) -> None:
    serve(httpserver, "buildings", BODY_GEOM, geometry="geom")
    outcome = run(httpserver, ["buildings"], geometry="geom")
    assert outcome.rows_by_table == {"buildings": 2}  # untagged node 4927326183 dropped
    rows = query("SELECT element_type, element_id, geometry, members, min_lat FROM osm.buildings ORDER BY element_id")
    assert [(r[0], r[1]) for r in rows] == [("relation", 6518385), ("way", 10322303)]
    way = json.loads(rows[1][2])
    assert way["type"] == "LineString"  # not closed
    assert len(way["coordinates"]) == 17
    assert rows[1][4] == 37.8687499
    relation = json.loads(rows[0][2])
    assert [g["type"] for g in relation["geometries"]] == ["Polygon"] * 6  # each member ring is closed
    assert [m["role"] for m in json.loads(rows[0][3])] == ["outer"] * 3 + ["inner"] * 3


def test_remark_is_a_server_side_failure(home: Any, httpserver: HTTPServer) -> None:
    serve(httpserver, "amenities", REMARK)
    remark = fixture_json(REMARK)["remark"]
    assert fixture_json(REMARK)["elements"] == []
    with pytest.raises(FetchError) as raised:
        run(httpserver, ["amenities"])
    message = str(raised.value)
    assert message.startswith(f"osm-bj-amenities BJ: {httpserver.url_for(PATH)}?data=")
    assert message.endswith(f"Overpass API remark (the query failed on the server): {remark}")
    assert 'runtime error: Query timed out in "query" at line 4 after 2 seconds.' in message
    [ledger] = ledger_runs("osm-bj-amenities")
    assert (ledger["status"], ledger["error_kind"]) == ("failed", "fetch_failed")
    assert osm_tables() == set()


def test_all_layers_in_one_batch_and_rerun_is_unchanged(home: Any, httpserver: HTTPServer) -> None:
    serve(httpserver, "buildings", WAY)
    serve(httpserver, "landuse", RELATION_CENTER)
    serve(httpserver, "amenities", CAFES)
    first, second = run(httpserver, None), run(httpserver, None)
    assert (first.instance, first.partition_key) == ("osm-bj", "BJ")
    assert (first.status, second.status) == ("loaded", "unchanged")
    assert first.rows_by_table == {"buildings": 1, "landuse": 1, "amenities": 103}
    counts = query(
        "SELECT (SELECT count() FROM osm.buildings), (SELECT count() FROM osm.landuse), "
        "(SELECT count() FROM osm.amenities)"
    )
    assert counts == [(1, 1, 103)]
    assert [r["status"] for r in ledger_runs("osm-bj")] == ["loaded", "unchanged"]
    assert len(httpserver.log) == 6  # one query per layer per run, no paging
    batch_ids = query("SELECT DISTINCT _batch_id FROM osm.amenities")
    assert batch_ids == [(first.batch_id,)]


def test_parse_rejects_what_is_not_an_overpass_document() -> None:
    with pytest.raises(FetchError, match="expected an Overpass JSON document"):
        parse_response("osm-bj", "http://x", [])
    with pytest.raises(FetchError, match="expected node, way or relation"):
        to_rows("osm-bj", "http://x", "BJ", "amenities", [{"type": "count", "id": 0, "tags": {"total": "3"}}])


def test_bad_parameters_fail_before_any_request(home: Any, httpserver: HTTPServer) -> None:
    with pytest.raises(ConfigurationError, match="ISO 3166-1"):
        ingest_osm("Benin", base_url=httpserver.url_for(PATH))
    with pytest.raises(ConfigurationError, match="expected layers in"):
        ingest_osm("BJ", ["roads"], base_url=httpserver.url_for(PATH))
    assert len(httpserver.log) == 0
    assert set(LAYERS) == {"buildings", "landuse", "amenities"}
