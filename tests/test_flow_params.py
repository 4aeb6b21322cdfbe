"""Flow parameters are checked before the first request; every flow module answers --help; exit codes; time limits."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import date
from pathlib import Path
from types import ModuleType

import pytest
from prefect import Flow, Task

from blocks.ledger import open_ledger
from devtools.export_server import ExportServer
from devtools.generate import write_export
from headwater.cli import from_text, run_flow_cli
from headwater.errors import ConfigurationError
from headwater.ledger import LOADED, PARTIAL
from headwater.outcome import BatchOutcome
from headwater.params import EXPORT_SCHEMES, check_url, parse_date
from headwater.settings import get_settings
from tests.helpers import ledger_runs
from tests.prefect_server import REPO

DAY = "2026-11-22"
FLOW_MODULES = sorted(p.stem for p in (REPO / "flows").glob("*.py") if 'if __name__ == "__main__"' in p.read_text())


def _main(module: str) -> Callable[[list[str]], int]:
    return importlib.import_module(f"flows.{module}").main  # type: ignore[no-any-return]


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    return err[0]


def _nothing_recorded(instance: str) -> None:
    assert ledger_runs() == []
    with open_ledger() as ledger:
        assert ledger.health(instance) is None  # the circuit breaker counted nothing


def test_zero_window_days_exits_2_before_any_request_and_the_circuit_does_not_count_it(
    home: Path,
    exports: Path,
    server: ExportServer,
    configure: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(circuit_threshold="1")  # one counted failure would open the circuit
    write_export(exports, "ethereum", date.fromisoformat(DAY), 20)
    args = ["--network", "ethereum", "--date", DAY, "--base-url", server.base_url]
    for _ in range(2):
        assert _main("sot")([*args, "--window-days", "0"]) == 2
        assert _one_error_line(capsys) == "error: sot-ethereum: expected window_days as an integer ≥ 1, found 0"
    assert server.requests == []
    _nothing_recorded("sot-ethereum")

    assert _main("sot")(args) == 0  # the circuit is still closed
    assert "loaded" in capsys.readouterr().out


@pytest.mark.parametrize("base_url", ["htp://x", "localhost:8000", "http://", "http:///exports", "http://h:port/x"])
def test_malformed_base_url_exits_2_not_fetched_not_retried(
    home: Path, server: ExportServer, capsys: pytest.CaptureFixture[str], base_url: str
) -> None:
    assert _main("sot")(["--network", "ethereum", "--date", DAY, "--base-url", base_url]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("error: sot-ethereum: expected base_url as an absolute http://, https://, file:// URL")
    assert line.endswith(f"found {base_url!r}")
    assert server.requests == []
    _nothing_recorded("sot-ethereum")


@pytest.mark.parametrize(
    ("module", "args", "expected"),
    [
        ("sot", ["--network", "dogecoin", "--date", DAY], "expected a network in ethereum, bitcoin, torus"),
        ("sot", ["--network", "ethereum", "--date", "2026-13-01"], "expected --date as a date YYYY-MM-DD"),
        ("sot_sweep", ["--date", DAY, "--base-url", "htp://x"], "sot-ethereum: expected base_url as an absolute"),
        ("sot_sweep", ["--date", "22/11/2026"], "sot: expected --date as a date YYYY-MM-DD"),
        ("openaq", ["--locations", "abc"], "openaq: expected --locations as comma-separated integers"),
        ("openaq", ["--locations", "0"], "expected locations as a non-empty list of integers ≥ 1, found [0]"),
        ("openaq", ["--locations", "2178", "--base-url", "localhost:8000"], "openaq-2178: expected base_url"),
        ("fx", ["--ecb-url", "htp://x"], "fx-rates: expected ecb_url as an absolute http://, https:// URL"),
        ("fx", ["--frankfurter-url", "localhost:8000"], "fx-rates: expected frankfurter_url"),
        ("fx", ["--erapi-url", "file:///tmp/rates"], "fx-rates: expected erapi_url"),
        ("coffee", ["--stooq-url", "http://"], "coffee-prices: expected stooq_url"),
        ("worldbank", ["--vertical", "business", "--countries", "BEN,,TGO"], "expected countries as a non-empty"),
        ("faostat", ["--years", "2020,last"], "faostat-qcl: expected --years as comma-separated integers"),
        ("ilostat", ["--indicator", "UNE_DEAP_SEX_AGE_RT_A", "--base-url", "htp://x"], "expected base_url"),
        ("open_meteo", ["--base-url", "ftp://x"], "open-meteo-peru-coffee: expected base_url"),
        ("osm", ["--timeout", "0"], "osm-bj: expected timeout_s as an integer ≥ 1, found 0"),
        ("retention", ["--ledger-days", "0"], "retention: expected ledger_days as an integer ≥ 1, found 0"),
    ],
)
def test_bad_parameters_exit_2_with_one_line_and_nothing_recorded(
    home: Path,
    server: ExportServer,
    capsys: pytest.CaptureFixture[str],
    module: str,
    args: list[str],
    expected: str,
) -> None:
    if "--base-url" not in args and module.startswith("sot"):
        args = [*args, "--base-url", server.base_url]
    assert _main(module)(args) == 2
    assert expected in _one_error_line(capsys)
    assert server.requests == []
    assert ledger_runs() == []


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/exports", "https://api.example.org/v2/", "HTTP://Example.org", "http://[::1]:9/x"]
)
def test_well_formed_http_urls_pass(url: str) -> None:
    assert check_url("src", "base_url", url) == url


@pytest.mark.parametrize(
    "url", ["", "htp://x", "localhost:8000", "http://", "http:///x", "http://h:99999/", "http://a b/", "http://h/#x"]
)
def test_malformed_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^src: expected base_url as an absolute http://, https:// URL"):
        check_url("src", "base_url", url)


def test_file_urls_only_where_allowed() -> None:
    assert check_url("sot", "base_url", "file:///srv/exports", EXPORT_SCHEMES) == "file:///srv/exports"
    for url in ("file://host/srv/exports", "file:relative/path"):
        with pytest.raises(ConfigurationError):
            check_url("sot", "base_url", url, EXPORT_SCHEMES)
    with pytest.raises(ConfigurationError):
        check_url("fx", "ecb_url", "file:///srv/rates")


def test_command_line_lists_and_dates() -> None:
    assert from_text("--locations", list[int] | None, "2178, 8118") == [2178, 8118]
    assert from_text("--countries", list[str], "BEN, TGO") == ["BEN", "TGO"]
    assert from_text("--regions", list[dict[str, float]], '[{"x": 1}]') == [{"x": 1}]
    assert parse_date("sot", "--date", DAY) == date(2026, 11, 22)
    for text in ("", "1,,2", "1.5", "x"):
        with pytest.raises(ValueError, match="expected --locations as comma-separated integers"):
            from_text("--locations", list[int], text)
    with pytest.raises(ValueError, match="expected --regions as a JSON list"):
        from_text("--regions", list[dict[str, float]], "{}")
    for text in ("20261122", "2026-11-22T00:00", "yesterday"):
        with pytest.raises(ConfigurationError, match="--date"):
            parse_date("sot", "--date", text)


def _outcome(status: str, error: str | None = None) -> BatchOutcome:
    return BatchOutcome(
        instance="openaq-seed", partition_key="seed", status=status, rows_by_table={"measurements": 5}, error=error
    )


def test_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_flow_cli(lambda: _outcome(LOADED)) == 0
    assert capsys.readouterr().out.strip() == "openaq-seed: loaded 5 rows (1 table)"

    assert run_flow_cli(lambda: _outcome(PARTIAL, "location 2178: HTTP 500")) == 1
    captured = capsys.readouterr()
    assert captured.out.strip() == "openaq-seed: partial 5 rows (1 table)"
    assert captured.err.strip() == "error: location 2178: HTTP 500"
    assert run_flow_cli(lambda: _outcome(PARTIAL)) == 1  # partial is a failure even without a reason
    assert _one_error_line(capsys) == "error: openaq-seed: partial 5 rows (1 table)"

    def configuration() -> BatchOutcome:
        raise ConfigurationError("openaq", "expected something,\nfound another")

    def failure() -> BatchOutcome:
        raise RuntimeError("boom")

    assert run_flow_cli(configuration) == 2
    assert _one_error_line(capsys) == "error: openaq: expected something, found another"
    assert run_flow_cli(failure) == 1
    assert _one_error_line(capsys) == "error: boom"


def _flows(module: ModuleType) -> list[Flow]:  # type: ignore[type-arg]
    return [v for v in vars(module).values() if isinstance(v, Flow) and v.__module__ == module.__name__]


def test_every_flow_has_the_configured_time_limit() -> None:
    limit = get_settings().flow_timeout_s
    found = 0
    for name in FLOW_MODULES:
        for flow in _flows(importlib.import_module(f"flows.{name}")):
            assert flow.timeout_seconds == limit, f"flows.{name}:{flow.name} has timeout_seconds={flow.timeout_seconds}"
            found += 1
    assert found >= len(FLOW_MODULES)


def test_every_task_has_the_configured_time_limit() -> None:
    limit = get_settings().task_timeout_s
    modules = [f"tasks.{p.stem}" for p in sorted((REPO / "tasks").glob("*.py")) if p.stem != "__init__"]
    modules.append("headwater.api_batch")
    found = [
        task
        for name in modules
        for task in vars(importlib.import_module(name)).values()
        if isinstance(task, Task) and task.fn.__module__ == name
    ]
    # Tasks only where a task gives retries, caching or visibility; the rest of the pipeline is plain calls.
    assert sorted(t.name for t in found) == [
        "download-file",
        "download-manifest",
        "fetch-api-batch",
        "load-batch",
        "parse-shard",
    ]
    in_threads = {"download-file"}  # Prefect cannot interrupt a worker thread
    assert [t.name for t in found if t.timeout_seconds != (None if t.name in in_threads else limit)] == []


_HELP_SCRIPT = textwrap.dedent(
    """
    import contextlib, io, json, runpy, sys
    answers = {}
    for name in sys.argv[1:]:
        out = io.StringIO()
        code = None
        sys.argv = [name, "--help"]
        with contextlib.redirect_stdout(out):
            try:
                runpy.run_module(f"flows.{name}", run_name="__main__", alter_sys=True)
            except SystemExit as stop:
                code = stop.code
        answers[name] = {"code": code, "out": out.getvalue()}
    print(json.dumps(answers))
    """
)


def test_every_flow_module_answers_help_without_running(tmp_path: Path) -> None:
    """Each module runs as ``__main__`` (as ``python -m flows.<name> --help`` does), in one process to share imports."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEADWATER_", "PREFECT_"))}
    env.update(
        HEADWATER_HOME=str(home), PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_API_URL="http://127.0.0.1:9/api"
    )
    done = subprocess.run(
        [sys.executable, "-c", _HELP_SCRIPT, *FLOW_MODULES],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(answers) == FLOW_MODULES
    for name, answer in answers.items():
        assert answer["code"] == 0, f"flows.{name} --help: exit {answer['code']}, {answer['out'][:500]}"
        assert answer["out"].startswith(f"usage: python -m flows.{name}"), f"flows.{name}: {answer['out'][:500]}"
    assert not home.exists()  # nothing ran: no warehouse, no ledger, no temp dir


def test_command_line_runs_send_no_heartbeats_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefect joins its heartbeat thread (1 s sleeps) at every flow run's end: command-line runs skip it."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings, temporary_settings

    from headwater.cli import local_runs
    from headwater.settings import HEARTBEAT_VARIABLES

    for name in HEARTBEAT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 180}):  # Prefect's default (the suite's is off)
        with local_runs():
            assert get_current_settings().flows.heartbeat_frequency is None
        assert get_current_settings().flows.heartbeat_frequency == 180  # restored afterwards
    monkeypatch.setenv("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "30")  # asked for (as a worker's runs are)
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 30}), local_runs():
        assert get_current_settings().flows.heartbeat_frequency == 30
