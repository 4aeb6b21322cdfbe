"""The one HTTP layer: client factory, retries with backoff, streaming downloads with SHA-256.

Retries live here and only here (tenacity): transient failures (connection errors,
timeouts, 429 and 5xx) are retried with exponential backoff and jitter, honouring
``Retry-After``; any other 4xx fails at once. Every source uses these functions and
never builds its own client.
"""

from __future__ import annotations

import email.utils
import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from headwater.errors import FetchError, NotFoundError, TransientFetchError
from headwater.logs import run_logger
from headwater.settings import Settings, get_settings

CHUNK_BYTES = 1 << 20
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
T = TypeVar("T")


class HostRateLimiter:
    """At most ``rate`` requests per second per host, shared by every thread of the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next_slot: dict[str, float] = {}

    def wait(self, url: str, rate: float | None) -> None:
        """Block until a request to ``url``'s host is allowed."""
        if not rate:
            return
        host = urlparse(url).netloc
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_slot.get(host, now))
            self._next_slot[host] = slot + 1.0 / rate
        if slot > now:
            time.sleep(slot - now)


RATE_LIMITER = HostRateLimiter()


def host_rate(url: str, settings: Settings | None = None) -> float | None:
    """The configured requests-per-second limit of ``url``'s host, if any."""
    limits = (settings or get_settings()).http_rate_limits
    return limits.get(urlparse(url).hostname or "")


@dataclass(frozen=True)
class DownloadedFile:
    """A file streamed to disk, with what was measured on the way."""

    url: str
    path: Path
    bytes: int
    sha256: str


def make_client(settings: Settings | None = None, read_timeout_s: float | None = None) -> httpx.Client:
    """An httpx client with Headwater's timeouts, user agent and redirects.

    ``read_timeout_s`` lengthens the read timeout for APIs that answer only once a
    long server-side query has run (e.g. Overpass); it never shortens the default.
    """
    settings = settings or get_settings()
    read = max(settings.http_timeout_s, read_timeout_s or 0.0)
    return httpx.Client(
        timeout=httpx.Timeout(settings.http_timeout_s, read=read),
        headers={"User-Agent": settings.http_user_agent},
        follow_redirects=True,
    )


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    parsed = email.utils.parsedate_to_datetime(value)
    return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def raise_for_status(source: str, url: str, response: httpx.Response) -> None:
    """Turn an HTTP error status into the matching Headwater error."""
    status = response.status_code
    if status < 400:
        return
    reason = f"HTTP {status} {response.reason_phrase}".strip()
    if status in TRANSIENT_STATUSES or status >= 500:
        raise TransientFetchError(source, url, reason, status, _retry_after_s(response))
    if status == 404:
        raise NotFoundError(source, url, reason, status)
    excerpt = body_excerpt(response)
    raise FetchError(source, url, f"{reason}: {excerpt}" if excerpt else reason, status)


def body_excerpt(response: httpx.Response, limit: int = 300) -> str:
    """The start of an error response's body on one line (APIs explain 4xx there)."""
    try:
        text = response.read().decode(response.encoding or "utf-8", errors="replace")
    except httpx.HTTPError:
        return ""
    return " ".join(text.split())[:limit]


class _BackoffWait:
    """Exponential backoff with jitter, stretched to the server's Retry-After (capped)."""

    def __init__(self, settings: Settings) -> None:
        self._exponential = wait_exponential_jitter(
            initial=settings.http_backoff_initial_s,
            max=settings.http_backoff_max_s,
            jitter=settings.http_backoff_initial_s,
        )
        self._retry_after_max = settings.http_retry_after_max_s

    def __call__(self, state: RetryCallState) -> float:
        delay = self._exponential(state)
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, TransientFetchError) and error.retry_after_s is not None:
            delay = max(delay, min(error.retry_after_s, self._retry_after_max))
        return float(delay)


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    delay = state.next_action.sleep if state.next_action else 0.0
    run_logger().warning("attempt %s failed (%s); retrying in %.1fs", state.attempt_number, error, delay)


def retrying(settings: Settings | None = None) -> Retrying:
    """The retry policy for one HTTP operation: transient errors only."""
    settings = settings or get_settings()
    return Retrying(
        retry=retry_if_exception(lambda error: getattr(error, "transient", False)),
        stop=stop_after_attempt(settings.http_attempts),
        wait=_BackoffWait(settings),
        before_sleep=_log_retry,
        reraise=True,
    )


@contextmanager
def _translate_transport_errors(source: str, url: str) -> Iterator[None]:
    try:
        yield
    except httpx.TransportError as error:
        raise TransientFetchError(source, url, f"{type(error).__name__}: {error}") from error


def _stream_http(client: httpx.Client, source: str, url: str, dest: Path) -> DownloadedFile:
    digest = hashlib.sha256()
    size = 0
    RATE_LIMITER.wait(url, host_rate(url))
    with _translate_transport_errors(source, url), client.stream("GET", url) as response:
        raise_for_status(source, url, response)
        with dest.open("wb") as out:
            for chunk in response.iter_bytes(CHUNK_BYTES):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
    return DownloadedFile(url=url, path=dest, bytes=size, sha256=digest.hexdigest())


def _copy_local(source: str, url: str, dest: Path) -> DownloadedFile:
    origin = Path(unquote(urlparse(url).path))
    if not origin.is_file():
        raise NotFoundError(source, url, "no such file")
    digest = hashlib.sha256()
    size = 0
    with origin.open("rb") as src, dest.open("wb") as out:
        while chunk := src.read(CHUNK_BYTES):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return DownloadedFile(url=url, path=dest, bytes=size, sha256=digest.hexdigest())


def _get(
    client: httpx.Client, source: str, url: str, params: Mapping[str, Any] | None, headers: Mapping[str, str] | None
) -> httpx.Response:
    RATE_LIMITER.wait(url, host_rate(url))
    with _translate_transport_errors(source, url):
        response = client.get(url, params=params, headers=headers)
    raise_for_status(source, str(response.request.url), response)
    return response


def _retried(client: httpx.Client | None, call: Callable[[httpx.Client], T]) -> T:
    """Run ``call`` under the retry policy, on ``client`` or on a client of its own (then closed)."""
    owned = client is None
    http = client or make_client()
    try:
        for attempt in retrying():
            with attempt:
                return call(http)
    finally:
        if owned:
            http.close()
    raise AssertionError("unreachable: tenacity re-raises the last error")


def get(
    source: str,
    url: str,
    *,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    client: httpx.Client | None = None,
) -> httpx.Response:
    """GET with the retry policy and the host's rate limit; raises the matching Headwater error."""
    return _retried(client, lambda http: _get(http, source, url, params, headers))


def paginate(fetch_page: Callable[[int], tuple[T, int]], first: int = 1) -> Iterator[T]:
    """Yield pages from ``fetch_page(n) -> (page, total_pages)`` until the last page."""
    page = first
    while True:
        content, pages = fetch_page(page)
        yield content
        if page >= pages:
            return
        page += 1


def download_file(source: str, url: str, dest: Path, client: httpx.Client | None = None) -> DownloadedFile:
    """Stream ``url`` (http, https or file) to ``dest``, hashing on the way, with retries.

    A retry restarts the file from its first byte, so a broken transfer never leaves
    a mixed file behind.
    """
    if urlparse(url).scheme == "file":
        return _copy_local(source, url, dest)
    return _retried(client, lambda http: _stream_http(http, source, url, dest))
