"""File sources declared in ``sources.yaml``: configuration errors, readers, the flow, the watcher, on arrival.

Every test works on copies in a temp folder: the example folders under
``fixtures/filedrop/`` are never written to.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pandera.errors as pandera_errors
import polars as pl
import pytest
import yaml
from prefect.server.events.actions import RunDeployment as ServerRunDeployment

from deployments.automations import build_file_drop_trigger
from devtools.filedrop_fixtures import FIXTURES, parcels, survey_csv, survey_rows, write_fixtures, write_xlsx
from flows import filedrop_watch
from flows.filedrop import ingest_file_drop, main
from headwater import events
from headwater.errors import ConfigurationError, SchemaViolation
from headwater.filedrop import (
    STATE_KEY,
    FileRejected,
    SeenFile,
    load_config,
    read_file,
    scan_folder,
    source_spec,
)
from headwater.outcome import BatchOutcome
from tests.helpers import ledger_runs, query, temp_leftovers
from tests.prefect_server import (
    REPO,
    api_request,
    finished,
    prefect_server,
    process_worker,
    run_cli,
    wait_for,
    worker_env,
)

SURVEY = "instad-survey"
SURVEY_2023 = FIXTURES / "instad" / "enquete-agricole-2023.csv"
SURVEY_2024 = FIXTURES / "instad" / "enquete-agricole-2024.csv"
BAD_SURVEY = FIXTURES / "invalid" / "enquete-agricole-2022.csv"
TABLE = "instad.agricultural_survey"


def declared(name: str) -> dict[str, Any]:
    """A copy of an entry of the repository's ``sources.yaml``."""
    [entry] = [e for e in yaml.safe_load((REPO / "sources.yaml").read_text())["file_sources"] if e["name"] == name]
    return copy.deepcopy(entry)


def write_config(folder: Path, *entries: dict[str, Any], name: str = "sources.yaml") -> Path:
    """A sources file with ``entries`` in ``folder``."""
    path = folder / name
    path.write_text(
        yaml.safe_dump({"file_sources": list(entries)}, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    return path


@pytest.fixture
def drops(tmp_path: Path) -> Path:
    """The survey's drop folder (empty)."""
    folder = tmp_path / "drops" / "instad"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def survey_config(tmp_path: Path, drops: Path) -> Path:
    """The repository's survey declaration, its folder given relative to the config file."""
    entry = declared(SURVEY) | {"location": "drops/instad"}
    return write_config(tmp_path, entry)


def drop(source: Path, folder: Path, name: str | None = None) -> Path:
    """Copy a file into a drop folder (written aside, then renamed in, as a publisher should)."""
    target = folder / (name or source.name)
    partial = folder.parent / f".{target.name}.partial"
    shutil.copyfile(source, partial)
    os.replace(partial, target)
    return target


def survey_count(where: str = "1") -> int:
    """Rows in the survey table (0 when it does not exist yet)."""
    if not query("SELECT name FROM system.tables WHERE database = 'instad' AND name = 'agricultural_survey'"):
        return 0
    return int(query(f"SELECT count() FROM {TABLE} WHERE {where}")[0][0])


# --- configuration ---------------------------------------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(entry: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = entry
        for part in parents:
            target = target[part]
        target[last] = value

    return edit


CONFIG_ERRORS = [
    (_set("colums", {}), "file source 'instad-survey': colums: unknown key"),
    (
        _set("columns.yield_kg_ha.check", {"betwen": [0, 10]}),
        "file source 'instad-survey': columns.yield_kg_ha.check: unknown check 'betwen'",
    ),
    (
        _set("columns.department.check", {"range": [0, 10]}),
        "columns.department.check: range needs an int, float, date or datetime column, found string",
    ),
    (_set("columns.commune.check", {"pattern": "(["}), "columns.commune.check: expected pattern as a regular"),
    (_set("columns.area_ha.nulable", True), "columns.area_ha.nulable: unknown key"),
    (_set("columns.area_ha.type", "decimal"), "columns.area_ha.type: Input should be 'string'"),
    (_set("schedule", "61 * * * *"), "schedule: expected a cron expression (e.g. '0 6 * * 1') or 'on_arrival'"),
    (_set("key", ["survey_year", "parcel"]), "key: unknown column 'parcel'"),
    (_set("format.delimiter", ";;"), "format.delimiter: expected a single character, found ';;'"),
    (_set("format.encoding", "latin-42"), "format.encoding: unknown encoding 'latin-42'"),
    (_set("location", "https://example.org/drops/"), "location: expected a local folder"),
    (_set("glob", "**/*.csv"), "glob: expected a file name pattern"),
    (_set("database", "Instad-DB"), "database: String should match pattern"),
]


@pytest.mark.parametrize(("edit", "expected"), CONFIG_ERRORS)
def test_a_bad_declaration_is_one_line_naming_the_entry_and_the_field(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], expected: str
) -> None:
    entry = declared(SURVEY)
    edit(entry)
    with pytest.raises(ConfigurationError) as raised:
        load_config(write_config(tmp_path, entry))
    message = str(raised.value)
    assert message.startswith("sources.yaml: file source 'instad-survey': "), message
    assert expected in message
    assert "\n" not in message


def test_duplicates_unknown_top_level_keys_and_broken_yaml_are_one_line(tmp_path: Path) -> None:
    survey = declared(SURVEY)
    cases = {
        "twice.yaml": ({"file_sources": [survey, survey]}, "file source 'instad-survey': name: declared twice"),
        "table.yaml": (
            {"file_sources": [survey, survey | {"name": "survey-copy"}]},
            "file source 'survey-copy': table: instad.agricultural_survey is already loaded by file source",
        ),
        "top.yaml": ({"file_sources": [survey], "sourcs": []}, "top.yaml: sourcs: unknown key"),
        "nameless.yaml": ({"file_sources": [{"glob": "*.csv"}]}, "file source #1: name: missing"),
    }
    for name, (document, expected) in cases.items():
        path = tmp_path / name
        path.write_text(yaml.safe_dump(document, allow_unicode=True))
        with pytest.raises(ConfigurationError, match=expected):
            load_config(path)
    broken = tmp_path / "broken.yaml"
    broken.write_text("file_sources:\n  - name: [unclosed\n")
    with pytest.raises(ConfigurationError, match=r"broken.yaml: not valid YAML: .* at line 3"):
        load_config(broken)
    with pytest.raises(ConfigurationError, match=r"missing\.yaml: not found at"):
        load_config(tmp_path / "missing.yaml")


def test_the_example_declarations_load_and_their_files_pass_their_checks() -> None:
    sources = load_config()
    assert sorted(sources) == ["cadastre", SURVEY]
    assert sources[SURVEY].on_arrival
    assert sources["cadastre"].schedule == "0 5 * * 1"
    assert sources[SURVEY].folder == REPO / "fixtures" / "filedrop" / "instad"
    for source in sources.values():
        table = source_spec(source).table(source.table)
        for path in sorted(source.folder.glob(source.glob)):
            frame = read_file(source, path, source.name)
            assert frame.height >= 24
            table.schema.validate(frame, lazy=True)
    survey = sources[SURVEY]
    beside = survey.model_copy(update={"location": str(BAD_SURVEY.parent)})
    bad = read_file(beside, BAD_SURVEY, SURVEY)  # well-typed, but breaks its checks
    with pytest.raises(pandera_errors.SchemaErrors):
        source_spec(survey).table(survey.table).schema.validate(bad, lazy=True)


def test_the_committed_example_files_are_what_the_generator_writes(tmp_path: Path) -> None:
    for written in write_fixtures(tmp_path):
        committed = FIXTURES / written.relative_to(tmp_path)
        assert committed.read_bytes() == written.read_bytes(), committed


def test_the_table_derives_from_the_declaration() -> None:
    source = load_config()[SURVEY]
    table = source_spec(source).table("agricultural_survey")
    assert {c.name: c.clickhouse_type for c in table.columns} == {
        "source_file": "String",
        "survey_year": "Int64",
        "department": "String",
        "commune": "String",
        "crop": "String",
        "area_ha": "Float64",
        "yield_kg_ha": "Nullable(Float64)",
        "production_t": "Nullable(Float64)",
    }
    assert table.key == ("survey_year", "department", "commune", "crop")
    assert table.sort_key == ("survey_year", "department", "commune", "crop")
    assert source_spec(source).partition_columns == ("source_file",)
    assert source_spec(source).catch_up == "all"  # two files arriving together both run


# --- readers -----------------------------------------------------------------------------------------------------


def test_csv_with_a_decimal_comma_reads_into_the_declared_types() -> None:
    source = load_config()[SURVEY]
    frame = read_file(source, SURVEY_2023, SURVEY)
    assert frame.schema == pl.Schema(
        {
            "source_file": pl.String,
            "survey_year": pl.Int64,
            "department": pl.String,
            "commune": pl.String,
            "crop": pl.String,
            "area_ha": pl.Float64,
            "yield_kg_ha": pl.Float64,
            "production_t": pl.Float64,
        }
    )
    first = frame.row(0, named=True)
    assert first == {
        "source_file": "enquete-agricole-2023.csv",
        "survey_year": 2023,
        "department": "Alibori",
        "commune": "Banikoara",
        "crop": "Maïs",
        "area_ha": 16576.4,
        "yield_kg_ha": 1582.1,
        "production_t": 26225.5,
    }
    assert frame.get_column("yield_kg_ha").null_count() == sum(1 for row in survey_rows(2023) if row[5] is None) > 0


def test_csv_in_a_legacy_encoding(tmp_path: Path) -> None:
    entry = declared(SURVEY) | {"location": "."}
    entry["format"]["encoding"] = "windows-1252"
    source = load_config(write_config(tmp_path, entry))[SURVEY]
    path = tmp_path / "enquete-agricole-2023.csv"
    path.write_bytes(survey_csv(survey_rows(2023)[:3]).encode("cp1252"))
    assert read_file(source, path, SURVEY).get_column("crop").to_list() == ["Maïs", "Sorgho", "Coton"]


def test_xlsx_jsonl_and_parquet_read_into_the_same_frame(tmp_path: Path) -> None:
    cadastre = declared("cadastre") | {"location": "."}
    jsonl_source = load_config(write_config(tmp_path, cadastre))["cadastre"]
    xlsx_source = load_config(
        write_config(tmp_path, cadastre | {"format": {"type": "xlsx", "sheet": "Parcelles"}}, name="x.yaml")
    )["cadastre"]
    rows = parcels()
    names = list(rows[0])
    jsonl_path = tmp_path / "parcelles-cotonou.jsonl"
    shutil.copyfile(FIXTURES / "cadastre" / "parcelles-cotonou.jsonl", jsonl_path)
    xlsx_path = write_xlsx(tmp_path / "parcelles-cotonou.xlsx", "Parcelles", [names, *[list(r.values()) for r in rows]])

    from_jsonl = read_file(jsonl_source, jsonl_path, "cadastre")
    from_xlsx = read_file(xlsx_source, xlsx_path, "cadastre")

    assert from_jsonl.schema["registered_on"] == pl.Date
    assert from_jsonl.schema["built"] == pl.Boolean
    assert from_jsonl.schema["area_m2"] == pl.Float64
    assert from_jsonl.row(2, named=True)["registered_on"] == date.fromisoformat(rows[2]["registered_on"])
    assert from_xlsx.drop("source_file").equals(from_jsonl.drop("source_file"))
    assert from_xlsx.get_column("source_file").unique().to_list() == ["parcelles-cotonou.xlsx"]

    survey = declared(SURVEY) | {"location": ".", "format": "parquet"}
    parquet_source = load_config(write_config(tmp_path, survey, name="p.yaml"))[SURVEY]
    csv_frame = read_file(load_config()[SURVEY], SURVEY_2023, SURVEY)
    parquet_path = tmp_path / "enquete-agricole-2023.parquet"
    csv_frame.drop("source_file").with_columns(pl.col("survey_year").cast(pl.Int32)).write_parquet(parquet_path)
    from_parquet = read_file(parquet_source, parquet_path, SURVEY)
    assert from_parquet.drop("source_file").equals(csv_frame.drop("source_file"))
    assert from_parquet.schema == csv_frame.schema


def test_a_file_that_does_not_match_the_declaration_is_rejected_with_every_problem(tmp_path: Path) -> None:
    source = load_config()[SURVEY].model_copy(update={"location": str(tmp_path)})
    text = SURVEY_2023.read_text(encoding="utf-8").splitlines()
    cases = {
        "types.csv": "\n".join([*text[:3], text[3].replace(";4922,0;", ";n/d;"), "2023;Zou;Bohicon;Maïs;12,5;abc;"]),
        "columns.csv": "\n".join([text[0].replace("crop", "culture") + ";remarks", *text[1:3]]),
        "years.csv": "\n".join([*text[:3], text[3].replace("2023;", "2022;", 1)]),
    }
    expected = {
        "types.csv": [("area_ha", "type float", 1, ("n/d",)), ("yield_kg_ha", "type float", 1, ("abc",))],
        "columns.csv": [],
        "years.csv": [("survey_year", "one value per file", 2, ("2022", "2023"))],
    }
    for name, body in cases.items():
        path = tmp_path / name
        path.write_text(body + "\n", encoding="utf-8")
        with pytest.raises(FileRejected) as raised:
            read_file(source, path, f"{SURVEY} {name}")
        found = [(f.column, f.check, f.count, f.examples) for f in raised.value.failures]
        assert found == expected[name], str(raised.value)
        assert str(raised.value).startswith(f"{SURVEY} {name}: ")
    with pytest.raises(FileRejected, match="missing crop; undeclared culture, remarks"):
        read_file(source, tmp_path / "columns.csv", SURVEY)


# --- the flow through the shared pipeline --------------------------------------------------------------------------


def test_a_file_loads_once_reruns_unchanged_and_a_changed_file_replaces_only_its_rows(
    home: Path, survey_config: Path, drops: Path
) -> None:
    config = str(survey_config)
    drop(SURVEY_2023, drops)

    first = ingest_file_drop(SURVEY, "enquete-agricole-2023.csv", config)

    assert isinstance(first, BatchOutcome)
    assert (first.status, first.partition_key, first.rows_by_table) == (
        "loaded",
        "enquete-agricole-2023.csv",
        {"agricultural_survey": 42},
    )
    assert survey_count() == 42
    assert query(f"SELECT area_ha, yield_kg_ha FROM {TABLE} WHERE commune = 'Banikoara' AND crop = 'Maïs'") == [
        (16576.4, 1582.1)
    ]
    [run] = ledger_runs(SURVEY)
    assert (run["status"], run["partition_key"]) == ("loaded", "enquete-agricole-2023.csv")
    assert json.loads(run["notes"]) == {  # the file's own hash is part of the batch's content
        "file": "enquete-agricole-2023.csv",
        "sha256": hashlib.sha256(SURVEY_2023.read_bytes()).hexdigest(),
        "bytes": SURVEY_2023.stat().st_size,
    }

    drop(SURVEY_2023, drops)  # the same content again, with a new mtime
    drop(SURVEY_2024, drops)
    again = ingest_file_drop(SURVEY, config_path=config)  # every file of the folder

    assert isinstance(again, BatchOutcome)
    assert (again.status, again.partition_key, again.rows_by_table) == (
        "loaded",
        "2 file(s)",
        {"agricultural_survey": 42},
    )
    statuses = {(r["partition_key"], r["status"]) for r in ledger_runs(SURVEY)[1:]}
    assert statuses == {("enquete-agricole-2023.csv", "unchanged"), ("enquete-agricole-2024.csv", "loaded")}
    assert survey_count() == 84
    batches_2023 = query(f"SELECT DISTINCT _batch_id FROM {TABLE} WHERE source_file = 'enquete-agricole-2023.csv'")

    rows = survey_rows(2023)
    rows[0] = (*rows[0][:4], 17000.0, *rows[0][5:])
    (drops / "enquete-agricole-2023.csv").write_text(survey_csv(rows[:-2]), encoding="utf-8")
    changed = ingest_file_drop(SURVEY, "enquete-agricole-2023.csv", config)

    assert isinstance(changed, BatchOutcome)
    assert (changed.status, changed.rows_by_table) == ("loaded", {"agricultural_survey": 40})
    assert survey_count("source_file = 'enquete-agricole-2023.csv'") == 40
    assert survey_count("source_file = 'enquete-agricole-2024.csv'") == 42
    assert query(f"SELECT area_ha FROM {TABLE} WHERE commune = 'Banikoara' AND crop = 'Maïs' AND survey_year = 2023")[
        0
    ] == (17000.0,)
    after = query(f"SELECT DISTINCT _batch_id FROM {TABLE} WHERE source_file = 'enquete-agricole-2023.csv'")
    assert len(after) == 1
    assert after != batches_2023
    assert temp_leftovers() == []
    assert not (drops / "rejected").exists()


def test_a_file_failing_its_checks_is_rejected_with_a_report_and_nothing_loaded(
    home: Path, survey_config: Path, drops: Path
) -> None:
    config = str(survey_config)
    drop(SURVEY_2023, drops)
    assert ingest_file_drop(SURVEY, "enquete-agricole-2023.csv", config).status == "loaded"  # type: ignore[union-attr]
    bad = drop(BAD_SURVEY, drops)

    with pytest.raises(SchemaViolation) as raised:
        ingest_file_drop(SURVEY, bad.name, config)

    assert not bad.exists()
    rejected = drops / "rejected" / bad.name
    assert rejected.read_bytes() == BAD_SURVEY.read_bytes()
    report = json.loads((drops / "rejected" / f"{bad.name}.report.json").read_text())
    assert report["file"] == bad.name
    assert report["kind"] == "schema_violation"
    assert report["reason"] == " ".join(str(raised.value).split())
    assert "\n" not in report["reason"]
    checks = {(c["column"], c["check"]): c for c in report["failing_checks"]}
    assert checks[
        (
            "department",
            "isin(['Alibori', 'Atacora', 'Atlantique', 'Borgou', 'Collines', 'Couffo', "
            "'Donga', 'Littoral', 'Mono', 'Ouémé', 'Plateau', 'Zou'])",
        )
    ]["examples"] == ["Atakora"]
    assert checks[("yield_kg_ha", "greater_than_or_equal_to(0)")]["examples"] == ["-120.0"]
    assert checks[("yield_kg_ha", "less_than_or_equal_to(60000)")]["examples"] == ["98000.0"]
    assert any(check == "multiple_fields_uniqueness" for _, check in checks)
    assert survey_count("source_file = 'enquete-agricole-2022.csv'") == 0
    assert survey_count() == 42  # the loaded file is untouched
    runs = ledger_runs(SURVEY)
    assert [(r["partition_key"], r["status"]) for r in runs] == [
        ("enquete-agricole-2023.csv", "loaded"),
        ("enquete-agricole-2022.csv", "failed"),
    ]
    assert runs[-1]["error_kind"] == "schema_violation"
    assert runs[-1]["error"] == str(raised.value)
    assert temp_leftovers() == []
    assert query("SELECT name FROM system.tables WHERE database = 'instad' AND name LIKE '\\_%'") == []

    # the rejected folder is not watched nor swept: the next run over the folder sees only the good file
    swept = ingest_file_drop(SURVEY, config_path=config)
    assert isinstance(swept, BatchOutcome)
    assert (swept.status, swept.partition_key) == ("unchanged", "1 file(s)")


def test_the_command_line_exit_codes(
    home: Path, survey_config: Path, drops: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ["--source", SURVEY, "--config", str(survey_config)]
    drop(SURVEY_2023, drops)
    assert main([*config, "--file", "enquete-agricole-2023.csv"]) == 0
    assert re.fullmatch(
        rf"{SURVEY} enquete-agricole-2023\.csv: loaded 42 rows \(1 table, [0-9.]+ kB\) in [0-9.]+ s",
        capsys.readouterr().out.strip(),
    )
    assert main([*config, "--file", str(drops / "enquete-agricole-2023.csv")]) == 0
    assert "unchanged" in capsys.readouterr().out

    drop(SURVEY_2023, drops, "enquete-agricole-2025.csv")  # its rows say 2023: fine, the partition is the file
    broken = drops / "enquete-agricole-2026.csv"
    broken.write_text(SURVEY_2023.read_text(encoding="utf-8").replace(";16576,4;", ";beaucoup;"), encoding="utf-8")
    assert main([*config, "--file", broken.name]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"error: {SURVEY} enquete-agricole-2026.csv: 1 column(s) with values not of the declared")
    assert "area_ha: type float failed for 1 row(s), e.g. 'beaucoup'" in error
    assert len(error.strip().splitlines()) == 1
    report = json.loads((drops / "rejected" / "enquete-agricole-2026.csv.report.json").read_text())
    assert report["failing_checks"] == [
        {"column": "area_ha", "check": "type float", "count": 1, "examples": ["beaucoup"]}
    ]

    for argv, expected in (
        (["--source", "nope", "--config", str(survey_config)], "no file source 'nope' (declared: instad-survey)"),
        ([*config, "--file", "../elsewhere.csv"], "expected a file inside"),
        ([*config, "--file", "absent.csv"], "expected an existing file"),
        (["--source", SURVEY, "--config", str(drops / "none.yaml")], "none.yaml: not found"),
    ):
        assert main(argv) == 2
        assert expected in capsys.readouterr().err
    runs = ledger_runs(SURVEY)
    assert [r["status"] for r in runs] == ["loaded", "unchanged", "failed"]  # a bad parameter leaves no row


# --- on arrival ------------------------------------------------------------------------------------------------


def test_the_watcher_sees_new_and_changed_content_not_touches(tmp_path: Path, survey_config: Path, drops: Path) -> None:
    source = load_config(survey_config)[SURVEY]
    path = drop(SURVEY_2023, drops)
    now = time.time()

    young, state = scan_folder(source, {}, settle_s=60, now=now)
    assert (young, state) == ([], {})  # still settling
    [arrival], state = scan_folder(source, {}, settle_s=0, now=now)
    assert (arrival.source, arrival.path, arrival.bytes) == (SURVEY, path.name, path.stat().st_size)
    assert scan_folder(source, state, settle_s=0, now=now) == ([], state)

    drop(SURVEY_2023, drops)  # identical content, new mtime: hashed again, not an arrival
    touched, touched_state = scan_folder(source, state, settle_s=0, now=time.time())
    assert touched == []
    assert touched_state[path.name].sha256 == state[path.name].sha256
    assert touched_state[path.name].mtime_ns != state[path.name].mtime_ns or os.name != "posix"

    path.write_text(survey_csv(survey_rows(2023)[:5]), encoding="utf-8")
    [changed], changed_state = scan_folder(source, touched_state, settle_s=0, now=time.time())
    assert changed.sha256 != arrival.sha256
    (drops / "rejected").mkdir()
    os.replace(path, drops / "rejected" / path.name)
    assert scan_folder(source, changed_state, settle_s=0, now=time.time()) == ([], {})
    assert isinstance(next(iter(changed_state.values())), SeenFile)


def test_the_watcher_flow_emits_one_event_per_arrival_and_keeps_its_state_in_the_ledger(
    home: Path, survey_config: Path, drops: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emitted: list[tuple[str, str, dict[str, Any]]] = []
    monkeypatch.setattr(
        filedrop_watch.events,
        "emit",
        lambda event, instance, source, **payload: emitted.append((event, instance, payload)),
    )
    drop(SURVEY_2023, drops)
    drop(SURVEY_2024, drops)

    first = filedrop_watch.watch_file_drops(config_path=str(survey_config), run_for_s=0, settle_s=0)
    second = filedrop_watch.watch_file_drops(config_path=str(survey_config), run_for_s=0, settle_s=0)

    assert isinstance(first, list)
    assert sorted(a.path for a in first) == ["enquete-agricole-2023.csv", "enquete-agricole-2024.csv"]
    assert second == []
    assert sorted((e, i, p["path"]) for e, i, p in emitted) == [
        (events.FILEDROP_ARRIVED, SURVEY, "enquete-agricole-2023.csv"),
        (events.FILEDROP_ARRIVED, SURVEY, "enquete-agricole-2024.csv"),
    ]
    assert {p["sha256"] for _, _, p in emitted} == {a.sha256 for a in first}
    from blocks.ledger import open_ledger

    with open_ledger() as ledger:
        assert set(json.loads(ledger.get_state(SURVEY, STATE_KEY) or "{}")) == {
            "enquete-agricole-2023.csv",
            "enquete-agricole-2024.csv",
        }
    with pytest.raises(ConfigurationError, match="no file source 'nope'"):
        filedrop_watch.watch_file_drops(["nope"], config_path=str(survey_config), run_for_s=0)


def test_the_trigger_runs_the_deployment_with_the_file_and_the_server_accepts_it() -> None:
    from uuid import uuid4

    automation = build_file_drop_trigger(SURVEY, uuid4())
    assert automation.name == f"headwater-filedrop-{SURVEY}"
    assert automation.trigger.expect == {events.FILEDROP_ARRIVED}  # type: ignore[union-attr]
    [action] = automation.actions
    assert ServerRunDeployment.model_validate(action.model_dump(mode="json")).parameters == {
        "file": {"__prefect_kind": "jinja", "template": "{{ event.payload.path }}"}
    }


def test_every_file_source_and_the_watcher_have_a_deployment() -> None:
    """prefect.yaml declares a deployment per file source (named as it) and the watcher's."""
    deployments = {d["name"]: d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]}
    watch = deployments["filedrop-watch"]
    assert watch["entrypoint"] == "flows/filedrop_watch.py:watch_file_drops"
    assert [s["cron"] for s in watch["schedules"]] == ["* * * * *"]
    for source in load_config().values():
        deployment = deployments[source.name]
        assert deployment["entrypoint"] == "flows/filedrop.py:ingest_file_drop"
        assert deployment["parameters"]["source"] == source.name
        crons = [s["cron"] for s in deployment["schedules"]]
        assert crons == ([source.schedule] if not source.on_arrival else crons), source.name


# --- on arrival, end to end on a real server -----------------------------------------------------------------------


class Server:
    """A Prefect server, the pool, the two deployments, the file-drop trigger and a process worker."""

    def __init__(self, home: Path, api_url: str, config: Path, drops: Path) -> None:
        self.home, self.api_url, self.config, self.drops = home, api_url, config, drops

    def env(self) -> dict[str, str]:
        return worker_env(self.home, self.api_url, self.home / "headwater")

    def api(self, method: str, path: str, body: Any = None) -> Any:
        return api_request(self.api_url, method, path, body)

    def file_runs(self, deployment: str) -> list[dict[str, Any]]:
        """Flow runs of ``deployment`` started for a file (not the runs its schedule creates ahead)."""
        [found] = [d for d in self.api("POST", "/deployments/filter", {}) if d["name"] == deployment]
        body = {"flow_runs": {"deployment_id": {"any_": [found["id"]]}}}
        return [run for run in self.api("POST", "/flow_runs/filter", body) if run["parameters"].get("file")]

    def python(self, code: str) -> str:
        result = run_cli([sys.executable, "-c", code], self.env())
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout.strip()


def deployments_file(folder: Path, config: Path) -> Path:
    """The two deployments as the README tells to declare them, on the test's config (watcher started by hand)."""
    job_variables = {"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}}
    pool = {"name": "headwater", "job_variables": job_variables}
    document = {
        "name": "headwater-filedrop-test",
        "prefect-version": "3.8.8",
        "build": None,
        "push": None,
        "deployments": [
            {
                "name": SURVEY,
                "entrypoint": "flows/filedrop.py:ingest_file_drop",
                "parameters": {"source": SURVEY, "config_path": str(config)},
                "tags": ["headwater", "filedrop", "source"],
                "work_pool": pool | {"work_queue_name": "agriculture"},
                "concurrency_limit": 1,
                "schedules": [{"cron": "20 2 * * *", "timezone": "UTC", "slug": f"{SURVEY}-sweep", "active": True}],
            },
            {
                "name": "filedrop-watch",
                "entrypoint": "flows/filedrop_watch.py:watch_file_drops",
                "parameters": {"config_path": str(config), "poll_s": 1, "settle_s": 1},
                "tags": ["headwater", "maintenance"],
                "work_pool": pool | {"work_queue_name": "maintenance"},
                "concurrency_limit": 1,
                "schedules": [
                    {"cron": "* * * * *", "timezone": "UTC", "slug": "filedrop-watch-minutely", "active": False}
                ],
            },
        ],
    }
    path = folder / "prefect-filedrop.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def arrival_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("filedrop-server")
    drops = home / "drops" / "instad"
    drops.mkdir(parents=True)
    config = write_config(home, declared(SURVEY) | {"location": "drops/instad"})
    with prefect_server(home) as api_url:
        server = Server(home, api_url, config, drops)
        setup = run_cli([sys.executable, "-m", "deployments.setup"], server.env())
        assert setup.returncode == 0, setup.stderr
        deployments = deployments_file(home, config)
        deploy = run_cli(
            [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(deployments)],
            server.env(),
            timeout=300,
        )
        assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
        applied = server.python(
            "from deployments.automations import ensure_file_drop_triggers; "
            f"print(ensure_file_drop_triggers({str(config)!r}))"
        )
        assert f"created automation headwater-filedrop-{SURVEY}" in applied
        with process_worker(home / "worker.log", server.env()):
            yield server


@pytest.mark.server
def test_a_dropped_file_is_loaded_within_a_minute_once(arrival_server: Server) -> None:
    server = arrival_server
    watcher_id = server.python(
        "import sys; from prefect.deployments import run_deployment; "
        "print(run_deployment('watch-file-drops/filedrop-watch', parameters={'run_for_s': 150}, timeout=0).id)"
    )
    running = lambda: server.api("GET", f"/flow_runs/{watcher_id}")["state"]["type"] == "RUNNING"  # noqa: E731
    log = server.home / "worker.log"
    wait_for("the watcher running", running, 120, log)
    time.sleep(3)  # its first scans saw an empty folder

    dropped = time.monotonic()
    drop(SURVEY_2023, server.drops)
    [run] = wait_for("a run of the survey's deployment", lambda: server.file_runs(SURVEY), 60, log)
    final = wait_for("the run to finish", lambda: finished(server.api_url, run["id"]), 90, log)
    took = time.monotonic() - dropped

    assert final["state"]["type"] == "COMPLETED", final["state"]
    assert final["parameters"]["file"] == "enquete-agricole-2023.csv"
    assert took < 60, f"loaded {took:.0f} s after the drop"
    count = "from blocks.warehouse import ClickHouseWarehouse\n" + (
        f"with ClickHouseWarehouse.from_settings().session() as c: print(c.command('SELECT count() FROM {TABLE}'))"
    )
    assert server.python(count) == "42"
    ledger = (
        "from blocks.ledger import open_ledger\n"
        f"with open_ledger() as l: print([(r['partition_key'], r['status']) for r in l.runs_for({SURVEY!r})])"
    )
    assert server.python(ledger) == "[('enquete-agricole-2023.csv', 'loaded')]"

    drop(SURVEY_2023, server.drops)  # the same file dropped again
    time.sleep(12)  # several scans (every second), the settling time and the automation's delay

    assert len(server.file_runs(SURVEY)) == 1
    assert server.python(count) == "42"
    assert server.python(ledger) == "[('enquete-agricole-2023.csv', 'loaded')]"
    server.api(
        "POST",
        f"/flow_runs/{watcher_id}/set_state",
        {"state": {"type": "CANCELLED", "name": "Cancelled"}, "force": True},
    )
