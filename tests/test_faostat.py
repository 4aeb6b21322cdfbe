"""FAOSTAT QCL production against the recorded CSV download served on loopback.

The recording (fixtures/SOURCES.md) is a FAOSTAT "Download data" CSV for India (FAOSTAT
area 100, M49 356), elements area harvested and yield; its exact query is not known, so
it is served for the query this flow sends for that selection. The data service answers
one CSV per request: there are no pages to follow.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from flows.faostat import ingest_faostat
from headwater.errors import FetchError
from headwater.sources.faostat import data_params
from tests.helpers import ledger_runs, query
from tests.recorded import fixture_bytes

RECORDED = "faostat/FAOSTAT_data_QCL_India_areaharvested_yield_first50.csv"
PATH = "/en/data/QCL"
INDIA = "100"
ELEMENTS = ["2312", "2413"]  # area harvested, yield (what the web page sends for them)


INSTANCE = "faostat-qcl-100"  # India; the default area (Benin) is faostat-qcl


def recorded_rows() -> list[dict[str, str]]:
    """The recorded CSV's data rows, read with the standard library (BOM stripped)."""
    return list(csv.DictReader(io.StringIO(fixture_bytes(RECORDED).decode("utf-8-sig"))))


def _serve_recorded(httpserver: HTTPServer) -> None:
    httpserver.expect_request(PATH, query_string=data_params(INDIA, tuple(ELEMENTS))).respond_with_data(
        fixture_bytes(RECORDED), content_type="text/csv"
    )


def _run(httpserver: HTTPServer) -> Any:
    return ingest_faostat(INDIA, elements=ELEMENTS, base_url=httpserver.url_for("/"))


def _no_table() -> bool:
    return query("SELECT count() FROM system.tables WHERE database = 'faostat' AND name = 'production'")[0][0] == 0


def test_rows_and_types_match_the_recorded_csv(home: Path, httpserver: HTTPServer) -> None:
    _serve_recorded(httpserver)
    outcome = _run(httpserver)
    records = recorded_rows()
    assert outcome.status == "loaded"
    assert outcome.rows_by_table == {"production": len(records)} == {"production": 50}
    [request] = [r for r, _ in httpserver.log]
    assert (request.args["area"], request.args["element"], request.args["output_type"]) == ("100", "2312,2413", "csv")
    columns = "domain_code, requested_area, area_code, area, element_code, unit, value, flag, flag_description, note"
    where = "item_code = '01371' AND year = {y:Int64} AND element = {e:String}"
    # the empty Value with flag M is NULL, not 0; the CPC code keeps its leading zero
    assert query(f"SELECT {columns} FROM faostat.production WHERE {where}", {"y": 2010, "e": "Area harvested"}) == [
        ("QCL", "100", "356", "India", "5312", "ha", None, "M", "Missing value; data cannot exist", "")
    ]
    [(value, unit, code)] = query(
        f"SELECT value, unit, element_code FROM faostat.production WHERE {where}", {"y": 2011, "e": "Yield"}
    )
    assert (value, unit, code) == (pytest.approx(608.7), "kg/ha", "5412")
    assert query("SELECT value FROM faostat.production WHERE item_code = '01654' AND year = 2000 AND unit = 'ha'") == [
        (680770.0,)
    ]
    assert query("SELECT countIf(value IS NULL), uniqExact(item_code) FROM faostat.production") == [(1, 2)]
    types = dict(query("SELECT name, type FROM system.columns WHERE database = 'faostat' AND table = 'production'"))
    assert not [name for name in types if "\ufeff" in name or " " in name]  # the BOM'd header does not leak
    assert (types["item_code"], types["area_code"], types["element_code"]) == ("String", "String", "String")
    assert (types["year"], types["value"], types["requested_area"]) == ("Int64", "Nullable(Float64)", "String")


def test_error_status_fails_clearly(home: Path, httpserver: HTTPServer) -> None:
    # No FAOSTAT error body was recorded; the status alone drives the failure.
    httpserver.expect_request(PATH).respond_with_data("", status=400)
    with pytest.raises(FetchError) as raised:
        _run(httpserver)
    message = str(raised.value)
    assert message.startswith("faostat-qcl-100 QCL: http://")
    assert f"{PATH}?area=100&area_cs=M49&element=2312%2C2413" in message
    assert "HTTP 400" in message
    assert len(httpserver.log) == 1  # a 4xx is not retried
    [run] = ledger_runs(INSTANCE)
    assert (run["status"], run["error_kind"]) == ("failed", "fetch_failed")
    assert _no_table()


def test_a_body_that_is_not_the_faostat_csv_fails_clearly(home: Path, httpserver: HTTPServer) -> None:
    # A real CSV of another service (ILOSTAT) stands for "some other answer with HTTP 200".
    other = fixture_bytes("ilostat/rplumber_indicator_UNE_DEAP_SEX_AGE_RT_A_type-code.csv")
    httpserver.expect_request(PATH).respond_with_data(other, content_type="text/csv")
    with pytest.raises(FetchError, match=r"expected the CSV columns \['Domain Code'.*found \['ref_area'") as raised:
        _run(httpserver)
    assert str(raised.value).startswith("faostat-qcl-100 QCL: http://")
    [run] = ledger_runs(INSTANCE)
    assert (run["status"], run["error_kind"]) == ("failed", "fetch_failed")
    assert _no_table()
