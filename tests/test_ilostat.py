"""ILOSTAT rplumber indicator CSVs against recorded responses served on loopback.

The code-style recording of UNE_DEAP_SEX_AGE_RT_A was merged upstream from three
captures filtered on KEN, USA and X01 (fixtures/SOURCES.md); it is served as the answer
to one request for those three areas. rplumber answers one CSV per request: there are
no pages to follow.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from flows.ilostat import ingest_ilostat
from headwater.errors import FetchError
from headwater.sources.ilostat import error_text, indicator_url, parse_csv
from tests.helpers import ledger_runs, query
from tests.recorded import fixture_bytes

UNE = "UNE_DEAP_SEX_AGE_RT_A"
RECORDED = "ilostat/rplumber_indicator_UNE_DEAP_SEX_AGE_RT_A_type-code.csv"
LABELS = "ilostat/rplumber_indicator_EMP_NIFL_SEX_RT_A_type-label_first50.csv"
ERROR_400 = "ilostat/rplumber_error_400_invalid_dataset.json"
PATH = "/data/indicator/"
AREAS = ["KEN", "USA", "X01"]
QUERY = f"id={UNE}&ref_area=KEN+USA+X01&type=code&format=.csv"  # a literal '+' between areas
INSTANCE = "ilostat-une-deap-sex-age-rt-a"


def recorded_rows() -> list[dict[str, str]]:
    """The recorded CSV's data rows, read with the standard library."""
    return list(csv.DictReader(io.StringIO(fixture_bytes(RECORDED).decode("utf-8-sig"))))


def _serve_recorded(httpserver: HTTPServer) -> None:
    httpserver.expect_request(PATH, query_string=QUERY).respond_with_data(
        fixture_bytes(RECORDED), content_type="application/octet-stream"
    )


def _run(httpserver: HTTPServer, indicator: str = UNE, ref_areas: list[str] | None = AREAS) -> Any:
    return ingest_ilostat(indicator, ref_areas=ref_areas, base_url=httpserver.url_for("/"))


def _no_table() -> bool:
    return (
        query("SELECT count() FROM system.tables WHERE database = 'ilostat' AND name = 'indicator_values'")[0][0] == 0
    )


def test_rows_and_types_match_the_recorded_csv(home: Path, httpserver: HTTPServer) -> None:
    _serve_recorded(httpserver)
    outcome = _run(httpserver)
    assert INSTANCE == "ilostat-une-deap-sex-age-rt-a"
    assert outcome.status == "loaded"
    assert outcome.rows_by_table == {"indicator_values": len(recorded_rows())} == {"indicator_values": 52}
    columns = "dataset_id, indicator, obs_value, obs_status, note_classif, note_indicator, note_source, classif2"
    assert query(f"SELECT {columns} FROM ilostat.indicator_values WHERE ref_area = 'KEN' AND time = '2005'") == [
        (UNE, "UNE_DEAP_SEX_AGE_RT", 9.957, "B", "", "I11:264", "R1:3513", "")
    ]
    assert query(
        "SELECT obs_value, note_classif, note_source FROM ilostat.indicator_values "
        "WHERE ref_area = 'USA' AND sex = 'SEX_M' AND classif1 = 'AGE_YTHADULT_Y15-24' AND time = '2025'"
    ) == [(10.917, "C6:1058", "R1:3513_R1:2803_T2:85")]
    assert query("SELECT source, obs_value, note_source FROM ilostat.indicator_values WHERE time = '2027'") == [
        ("XA:8405", 4.842, "")
    ]
    assert query("SELECT ref_area, count() FROM ilostat.indicator_values GROUP BY ref_area ORDER BY ref_area") == [
        ("KEN", 6),
        ("USA", 18),
        ("X01", 28),
    ]
    types = dict(
        query("SELECT name, type FROM system.columns WHERE database = 'ilostat' AND table = 'indicator_values'")
    )
    assert (types["time"], types["obs_value"], types["ref_area"]) == ("String", "Nullable(Float64)", "String")
    assert types["dataset_id"] == "String"


def test_invalid_dataset_400_fails_clearly(home: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request(PATH, query_string="id=FOO_BAR_A&ref_area=BEN&type=code&format=.csv").respond_with_data(
        fixture_bytes(ERROR_400), status=400, content_type="application/json"
    )
    with pytest.raises(FetchError) as raised:
        _run(httpserver, "FOO_BAR_A", ref_areas=None)  # default ref_area BEN
    message = str(raised.value)
    assert message.startswith("ilostat-foo-bar-a FOO_BAR_A: http://")
    assert f"{PATH}?id=FOO_BAR_A&ref_area=BEN&type=code&format=.csv" in message
    assert "HTTP 400 BAD REQUEST" in message
    assert '"error": "deprecated or invalid dataset id=FOO_BAR_A"' in message  # the body's start (headwater.http)
    assert len(httpserver.log) == 1  # a 4xx is not retried
    [run] = ledger_runs("ilostat-foo-bar-a")
    assert (run["status"], run["error_kind"]) == ("failed", "fetch_failed")
    assert _no_table()


def test_the_error_body_is_read_when_it_reaches_the_parser() -> None:
    body = fixture_bytes(ERROR_400)
    assert error_text(body) == "deprecated or invalid dataset id=FOO_BAR_A"
    assert error_text(fixture_bytes(RECORDED)) is None
    with pytest.raises(FetchError, match="ILOSTAT API error: deprecated or invalid dataset id=FOO_BAR_A"):
        parse_csv("ilostat-foo-bar-a", "http://x/data/indicator/?id=FOO_BAR_A", body, "FOO_BAR_A")


def test_label_style_csv_is_refused(home: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request(PATH).respond_with_data(fixture_bytes(LABELS), content_type="application/octet-stream")
    with pytest.raises(FetchError, match=r"found \['ref_area.label'.*only type=code is supported") as raised:
        _run(httpserver, "EMP_NIFL_SEX_RT_A")
    assert str(raised.value).startswith("ilostat-emp-nifl-sex-rt-a EMP_NIFL_SEX_RT_A: http://")
    [run] = ledger_runs("ilostat-emp-nifl-sex-rt-a")
    assert (run["status"], run["error_kind"]) == ("failed", "fetch_failed")
    assert _no_table()


def test_rows_of_another_indicator_are_refused() -> None:
    with pytest.raises(FetchError, match=r"expected indicator EMP_NIFL_SEX_RT on every row, found \['UNE_DEAP"):
        parse_csv("ilostat-emp-nifl-sex-rt-a", "http://x", fixture_bytes(RECORDED), "EMP_NIFL_SEX_RT_A")


def test_a_leading_bom_does_not_reach_the_column_names() -> None:
    # Upstream says rplumber bodies start with a BOM; the index copy of this recording has none.
    plain = parse_csv("ilostat", "http://x", fixture_bytes(RECORDED), UNE)
    with_bom = parse_csv("ilostat", "http://x", b"\xef\xbb\xbf" + fixture_bytes(RECORDED), UNE)
    assert with_bom.equals(plain)
    assert plain.height == 52
    assert plain["ref_area"].head(1).to_list() == ["KEN"]


def test_url_sends_one_literal_plus_separated_ref_area_list() -> None:
    assert indicator_url("https://rplumber.ilo.org/", UNE, ("BEN",)) == (
        f"https://rplumber.ilo.org/data/indicator/?id={UNE}&ref_area=BEN&type=code&format=.csv"
    )
    assert indicator_url("http://h", UNE, ("BEN", "TGO")).endswith("ref_area=BEN+TGO&type=code&format=.csv")
