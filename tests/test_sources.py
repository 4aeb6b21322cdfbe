"""The standard suite every declared API source runs through, on its recorded responses.

The table is the demo's (``devtools/replays.py``): each entry registers the recorded
bodies on a real loopback server and gives the flow's parameters. What is tested here
is what every source shares: rows and types land, a rerun adds nothing, 503 with
Retry-After is retried, 404 is not, a malformed body fails cleanly with nothing loaded
and an error naming the source and the URL, and the command line's exit codes. Source
test files keep only what is specific to their source.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from devtools.export_server import ExportServer, Reply
from devtools.replays import REGISTRARS, DemoRun
from headwater.errors import HeadwaterError
from headwater.ledger import SUCCESSES
from headwater.loading import qualified
from headwater.outcome import BatchOutcome
from headwater.tables import LINEAGE_COLUMNS, MERGE
from tests.helpers import ledger_runs, query

ENTRIES = {register.__name__.removeprefix("register_"): register for register in REGISTRARS}


@pytest.fixture(params=sorted(ENTRIES))
def recorded(request: pytest.FixtureRequest, home: Path, server: ExportServer) -> DemoRun:
    """One source's recorded responses, served on loopback, for a fresh home."""
    return ENTRIES[request.param](server)


def warehouse_rows(entry: DemoRun) -> dict[str, int]:
    """Rows per table of the entry as a reader sees them (merge tables deduplicated), 0 when absent."""
    existing = {
        r[0] for r in query("SELECT name FROM system.tables WHERE database = {d:String}", {"d": entry.database})
    }
    counts = {}
    for table in entry.tables:
        final = " FINAL" if entry.source.table(table).write_mode == MERGE else ""
        sql = f"SELECT count() FROM {qualified(entry.database, table)}{final}"
        counts[table] = int(query(sql)[0][0]) if table in existing else 0
    return counts


def column_types(entry: DemoRun, table: str) -> list[tuple[str, str]]:
    """(name, type) of a loaded table's columns, in table order."""
    sql = "SELECT name, type FROM system.columns WHERE database = {d:String} AND table = {t:String} ORDER BY position"
    return [(str(n), str(t)) for n, t in query(sql, {"d": entry.database, "t": table})]


def outcome_of(result: Any) -> BatchOutcome:
    assert isinstance(result, BatchOutcome), result
    return result


def test_rows_and_types_land_and_a_rerun_adds_nothing(recorded: DemoRun, server: ExportServer) -> None:
    first = outcome_of(recorded.run(server.root_url))
    assert first.status == "loaded"
    rows = warehouse_rows(recorded)
    assert rows == {t: first.rows_by_table.get(t, 0) for t in recorded.tables}
    assert sum(rows.values()) > 0
    for table in recorded.tables:
        spec = recorded.source.table(table)
        expected = [(c.name, c.clickhouse_type) for c in spec.columns] + list(LINEAGE_COLUMNS)
        assert column_types(recorded, table) == expected, table

    second = outcome_of(recorded.run(server.root_url))
    merges = any(recorded.source.table(t).write_mode == MERGE for t in recorded.tables)
    assert second.status in (("unchanged", "loaded") if merges else ("unchanged",))
    assert warehouse_rows(recorded) == rows  # nothing twice, nothing lost
    assert [r["status"] for r in ledger_runs(recorded.instance)] == ["loaded", second.status]


def test_503_with_retry_after_is_retried(recorded: DemoRun, server: ExportServer) -> None:
    path = server.replayed_paths[0]
    server.fail_path(path, 503)  # the server sends Retry-After: 0 with it
    outcome = outcome_of(recorded.run(server.root_url))
    assert outcome.status == "loaded"
    assert server.requests[:2] == [path, path]
    assert [r["status"] for r in ledger_runs(recorded.instance)] == ["loaded"]


def _nothing_loaded(entry: DemoRun) -> None:
    assert warehouse_rows(entry) == dict.fromkeys(entry.tables, 0)


def test_404_is_not_retried(recorded: DemoRun, server: ExportServer) -> None:
    server.alter_replies(lambda _reply: Reply(404, "text/plain", b"not here"))
    if recorded.fallback:
        assert outcome_of(recorded.run(server.root_url)).status == "loaded"  # its dated static fallback
    else:
        with pytest.raises(HeadwaterError, match="HTTP 404"):
            recorded.run(server.root_url)
        [run] = ledger_runs(recorded.instance)
        assert run["status"] == "failed"
        assert run["error_kind"] in ("not_found", "fetch_failed")
        _nothing_loaded(recorded)
    asked_twice = {path: n for path, n in Counter(server.requests).items() if n > 1}
    assert asked_twice == {}


def test_a_malformed_body_fails_cleanly_naming_the_source_and_the_url(recorded: DemoRun, server: ExportServer) -> None:
    server.alter_replies(lambda reply: Reply(reply.status, reply.content_type, reply.body[: len(reply.body) // 2]))
    if recorded.fallback:
        outcome = outcome_of(recorded.run(server.root_url))
        [run] = ledger_runs(recorded.instance)
        assert outcome.status == "loaded"
        assert server.root_url in run["notes"]  # the failed providers, by URL
        return
    with pytest.raises(HeadwaterError) as raised:
        recorded.run(server.root_url)
    message = str(raised.value)
    assert message.startswith(f"{recorded.instance}"), message
    assert server.root_url in message
    assert "\n" not in message
    [run] = ledger_runs(recorded.instance)
    assert (run["status"], run["error_kind"]) == ("failed", "fetch_failed")
    assert run["error"] == message
    _nothing_loaded(recorded)


def test_command_line_exit_codes(recorded: DemoRun, server: ExportServer, capsys: pytest.CaptureFixture[str]) -> None:
    main = recorded.flow_module().main
    assert main(recorded.argv(server.root_url)) == 0
    [line] = capsys.readouterr().out.strip().splitlines()
    assert line.startswith(f"{recorded.instance}")
    assert re.search(r": loaded [0-9,]+ rows? \([0-9]+ tables?, [0-9.]+ k?B\) in [0-9.]+ s$", line), line

    requests = len(server.requests)
    url_flag = "--" + recorded.source.urls[0].param.replace("_", "-")
    argv = recorded.argv(server.root_url)
    argv[argv.index(url_flag) + 1] = "htp://nowhere"
    assert main(argv) == 2
    [error] = capsys.readouterr().err.strip().splitlines()
    assert error.startswith(f"error: {recorded.instance}: expected {recorded.source.urls[0].param} as an absolute")
    assert len(server.requests) == requests  # nothing fetched

    if not recorded.fallback:
        server.alter_replies(lambda _reply: Reply(404, "text/plain", b"not here"))
        assert main(recorded.argv(server.root_url)) == 1
        [error] = capsys.readouterr().err.strip().splitlines()
        assert error.startswith(f"error: {recorded.instance}")
        assert "HTTP 404" in error
    assert ledger_runs(recorded.instance)[0]["status"] in SUCCESSES
