"""What a run tells the operator in Prefect: its name, its Failed state's reason, its summary artifact, its events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterName
from prefect.client.schemas.objects import Artifact, FlowRun
from prefect.client.schemas.sorting import FlowRunSort

from devtools.export_server import ExportServer
from devtools.generate import write_export
from devtools.replays import register_fx
from flows.sot import ingest_sot
from flows.sot_sweep import sot_retry_sweep
from headwater import events, providers
from headwater.errors import HeadwaterError
from headwater.ledger import RunRecord
from headwater.outcome import BatchOutcome
from tasks.record import batch_summary, provider_summary
from tests.helpers import ledger_runs, manifest_rows

DAY = date(2026, 11, 22)
REFUSED = "http://127.0.0.1:9/exports"  # nothing listens on port 9: connection refused


def flow_run(flow_run_id: str) -> FlowRun:
    """The flow run, read back through the Prefect client."""
    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(flow_run_id))


def artifacts_of(flow_run_id: str) -> list[Artifact]:
    """The artifacts attached to a flow run, read back through the Prefect client."""
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]))
        )


def summary_of(flow_run_id: str, key: str) -> Artifact:
    """The run's batch summary artifact (its one markdown artifact with ``key``)."""
    [summary] = [a for a in artifacts_of(flow_run_id) if a.key == key]
    return summary


def test_a_failed_run_states_its_one_line_reason(home: Path, configure: Callable[..., None]) -> None:
    configure(http_attempts="1")

    with pytest.raises(HeadwaterError) as raised:
        ingest_sot("ethereum", DAY, base_url=REFUSED)

    reason = str(raised.value)
    assert reason.startswith("sot-ethereum 2026-11-22: http://127.0.0.1:9/exports/ethereum/2026-11-22/META.json: ")
    assert "ConnectError" in reason
    [run] = ledger_runs("sot-ethereum")
    found = flow_run(run["flow_run_id"])
    assert found.name == "sot ethereum 2026-11-22"
    assert found.state is not None
    assert (found.state.type.value, found.state.message) == ("FAILED", reason)

    summary = summary_of(run["flow_run_id"], "sot-ethereum-last-batch")
    assert summary.type == "markdown"
    assert str(summary.flow_run_id) == run["flow_run_id"]
    assert f"**Reason:** {reason}" in str(summary.data)
    assert "| status | failed (transient_fetch_failed) |" in str(summary.data)
    assert "No table was loaded." in str(summary.data)
    assert "- / 0 / failed" not in str(summary.data)


def test_a_loaded_run_summarises_its_tables_rows_and_bytes(home: Path, exports: Path, server: ExportServer) -> None:
    expected = manifest_rows(write_export(exports, "bitcoin", DAY, 40))

    outcome = ingest_sot("bitcoin", DAY, base_url=server.base_url)
    assert isinstance(outcome, BatchOutcome)

    [run] = ledger_runs("sot-bitcoin")
    assert flow_run(run["flow_run_id"]).state.message != ""  # type: ignore[union-attr]
    summary = summary_of(run["flow_run_id"], "sot-bitcoin-last-batch")
    markdown = str(summary.data)
    assert str(summary.flow_run_id) == run["flow_run_id"]
    assert markdown.startswith("### sot-bitcoin 2026-11-22: loaded")
    assert "Reason" not in markdown
    for table, rows in outcome.rows_by_table.items():
        assert f"| {table} | {rows:,} |" in markdown
        assert rows == expected[table]
    assert f"| rows loaded | {sum(outcome.rows_by_table.values()):,} |" in markdown
    assert f"| bytes | {run['bytes']:,} |" in markdown
    assert f"| batch | {outcome.batch_id} |" in markdown
    assert "| duration | " in markdown


def test_a_provider_chain_run_names_its_provider(home: Path, server: ExportServer) -> None:
    fx = register_fx(server)

    fx.run(server.root_url)

    [run] = ledger_runs(fx.instance)
    markdown = str(summary_of(run["flow_run_id"], f"{fx.instance}-last-batch").data)
    assert "| provider | ecb |" in markdown


def test_the_provider_line_names_the_providers_that_failed_first() -> None:
    notes = {"providers": {"winner": "stooq", "failures": [{"provider": "yahoo", "error": "HTTP 503 | busy"}]}}

    assert provider_summary(notes) == "stooq (failed first: yahoo: HTTP 503 | busy)"
    assert provider_summary({"file": "x.csv"}) is None
    assert provider_summary(None) is None


def test_a_summary_cell_keeps_the_table_intact() -> None:
    record = RunRecord(status="failed", error_kind="fetch_failed", error="a | b\nc")
    request = ingest_request()

    markdown = batch_summary(request, record, 1.25)

    assert "**Reason:** a \\| b c" in markdown
    assert "| duration | 1.2 s |" in markdown or "| duration | 1.3 s |" in markdown


def ingest_request() -> Any:
    """A SOT batch request, as the flow would build it."""
    from headwater.batch import declared_run
    from headwater.settings import get_settings
    from headwater.sources.sot.contract import SOT

    raw = {"network": "ethereum", "processing_date": DAY, "window_days": 195, "base_url": REFUSED}
    return declared_run(SOT, raw, get_settings()).request


def test_a_failed_sweep_states_which_networks_failed(home: Path, configure: Callable[..., None]) -> None:
    configure(http_attempts="1")

    with pytest.raises(HeadwaterError) as raised:
        sot_retry_sweep(DAY, networks=["ethereum", "torus"], base_url=REFUSED)

    reason = str(raised.value)
    assert reason.startswith("sot retry sweep 2026-11-22: 2 of 2 failed: sot-ethereum 2026-11-22: http://")
    with get_client(sync_client=True) as client:  # the newest sweep of that day: other tests run sweeps too
        [sweep] = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["sot retry sweep 2026-11-22"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
    assert sweep.state is not None
    assert sweep.state.message == reason


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The Headwater events emitted during the test (event, resource, payload), not sent."""
    found: list[dict[str, Any]] = []
    monkeypatch.setattr(events, "emit_event", lambda **kwargs: found.append(kwargs))
    return found


def test_a_run_slower_than_the_threshold_emits_a_warning(
    home: Path, configure: Callable[..., None], exports: Path, server: ExportServer, emitted: list[dict[str, Any]]
) -> None:
    write_export(exports, "torus", DAY, 20)
    configure(slow_run_s="0.001")

    ingest_sot("torus", DAY, base_url=server.base_url)

    [slow] = [e for e in emitted if e["event"] == events.RUN_SLOW]
    assert slow["resource"]["prefect.resource.id"] == "headwater.source.sot-torus"
    assert slow["resource"][events.SEVERITY_LABEL] == "warning"
    assert slow["payload"]["status"] == "loaded"
    assert slow["payload"]["threshold_s"] == 0.001
    assert slow["payload"]["duration_s"] >= 0


def test_a_run_within_the_threshold_emits_nothing_slow(
    home: Path, exports: Path, server: ExportServer, emitted: list[dict[str, Any]]
) -> None:
    write_export(exports, "torus", DAY, 20)

    ingest_sot("torus", DAY, base_url=server.base_url)

    assert [e for e in emitted if e["event"] == events.RUN_SLOW] == []


def test_every_headwater_event_has_a_severity_in_the_one_table() -> None:
    declared = {value for name, value in vars(events).items() if name.isupper() and str(value).startswith("headwater.")}
    declared -= {events.SEVERITY_LABEL}
    assert providers.PROVIDERS_DISAGREE == events.PROVIDERS_DISAGREE
    assert set(events.SEVERITIES) == declared
    assert set(events.SEVERITIES.values()) == {"info", "warning", "critical"}
    assert events.severity_of(events.CIRCUIT_OPENED) == "critical"
    assert events.severity_of(events.RUN_SLOW) == "warning"
    assert events.severity_of(events.SOURCE_RECOVERED) == "info"
    assert events.severities_from("warning") == ["warning", "critical"]
    assert events.severities_from("info") == ["info", "warning", "critical"]


def test_an_emitted_event_carries_its_severity(emitted: list[dict[str, Any]]) -> None:
    events.emit(events.CIRCUIT_OPENED, "sot-ethereum", "sot", consecutive_failures=5)

    [event] = emitted
    assert event["resource"] == {
        "prefect.resource.id": "headwater.source.sot-ethereum",
        "prefect.resource.name": "sot-ethereum",
        "headwater.source": "sot",
        "headwater.severity": "critical",
    }
    assert event["payload"] == {"consecutive_failures": 5}
