"""One session-wide Prefect harness, a per-test Headwater home, and a real export server."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="headwater-tests-"))
os.environ.setdefault("PREFECT_HOME", str(_SESSION_DIR / "prefect"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(_SESSION_DIR / "prefect-results")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import pytest  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from devtools.export_server import ExportServer  # noqa: E402
from headwater.settings import get_settings  # noqa: E402
from tests.postgres import postgres_bin, postgres_server  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect server for the whole session."""
    with (
        prefect_test_harness(server_startup_timeout=60),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh HEADWATER_HOME (embedded warehouse and SQLite ledger) with fast retries and no waits."""
    home = tmp_path / "home"
    monkeypatch.setenv("HEADWATER_HOME", str(home))
    monkeypatch.setenv("HEADWATER_HTTP_BACKOFF_INITIAL_S", "0.01")
    monkeypatch.setenv("HEADWATER_HTTP_BACKOFF_MAX_S", "0.05")
    monkeypatch.setenv("HEADWATER_HTTP_TIMEOUT_S", "10")
    # an unpublished META.json fails at once; the tests of waiting for it set their own
    monkeypatch.setenv("HEADWATER_MANIFEST_WAIT_ATTEMPTS", "0")
    for name in list(os.environ):
        if name.startswith("HEADWATER_") and name not in (
            "HEADWATER_HOME",
            "HEADWATER_HTTP_BACKOFF_INITIAL_S",
            "HEADWATER_HTTP_BACKOFF_MAX_S",
            "HEADWATER_HTTP_TIMEOUT_S",
            "HEADWATER_MANIFEST_WAIT_ATTEMPTS",
        ):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


@pytest.fixture
def configure(home: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Set ``HEADWATER_<NAME>`` variables for one test and re-read the settings."""

    def apply(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"HEADWATER_{name.upper()}", value)
        get_settings.cache_clear()

    return apply


@pytest.fixture
def exports(tmp_path: Path) -> Path:
    """Directory the export server serves."""
    root = tmp_path / "exports"
    root.mkdir()
    return root


@pytest.fixture
def server(exports: Path) -> Iterator[ExportServer]:
    """A real HTTP server on 127.0.0.1 serving ``exports``."""
    with ExportServer(exports) as running:
        yield running


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the session (CI installs it; elsewhere skipped when absent)."""
    if postgres_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide PostgreSQL (apt-get install postgresql)")
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_backend(request: pytest.FixtureRequest, home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once on the SQLite ledger and once on a fresh PostgreSQL database."""
    if request.param == "postgresql":
        server_url = request.getfixturevalue("postgres_url")
        name = f"ledger_{os.urandom(6).hex()}"
        engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        engine.dispose()
        monkeypatch.setenv("HEADWATER_LEDGER_URL", server_url.rsplit("/", 1)[0] + f"/{name}")
        get_settings.cache_clear()
    return str(request.param)
