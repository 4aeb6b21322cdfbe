"""The one HTTP layer: client factory, retries with backoff, bounded streaming reads with SHA-256.

Retries live here and only here (tenacity): transient failures (connection errors,
timeouts, 429 and 5xx) are retried with exponential backoff and jitter, honouring
``Retry-After``; any other 4xx fails at once. Every source uses these functions and
never builds its own client.

Every read is bounded. Each attempt has a total deadline (redirects and every read
included; per-read timeouts never exceed what is left of it), every body has a size
cap counted on the *decoded* bytes (gzip/deflate are inflated here, a chunk at a
time, never past the cap), and redirects are followed here, at most
``MAX_REDIRECTS``, dropping every credential header when the origin changes.
"""

from __future__ import annotations

import email.utils
import hashlib
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
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

from headwater.errors import (
    BodyTooLargeError,
    FetchError,
    HeadwaterError,
    IntegrityError,
    NotFoundError,
    TimeoutFetchError,
    TransientFetchError,
)
from headwater.logs import run_logger
from headwater.settings import Settings, get_settings

CHUNK_BYTES = 1 << 20
EXCERPT_BYTES = 4096
MAX_REDIRECTS = 5
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
CREDENTIAL_MARKERS = ("key", "token", "auth", "secret", "cookie")
API_ENCODINGS = "gzip, deflate"  # the codings this module inflates with a bound
IDENTITY = {"Accept-Encoding": "identity"}  # files are hashed as published: ask for the exact bytes
_WBITS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS | 32}
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

DECLARED_RATE_LIMITS: dict[str, float] = {}
"""Requests per second per public host, as the sources declare them (``UrlParam.rate_limit``)."""


def host_rate(url: str, settings: Settings | None = None) -> float | None:
    """The requests-per-second limit of ``url``'s host: ``HEADWATER_HTTP_RATE_LIMITS``, else the declared one."""
    host = urlparse(url).hostname or ""
    limits = (settings or get_settings()).http_rate_limits
    return limits.get(host, DECLARED_RATE_LIMITS.get(host))


@dataclass(frozen=True)
class DownloadedFile:
    """A file streamed to disk, with what was measured on the way."""

    url: str
    path: Path
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Deadline:
    """The total time one attempt at ``url`` may take, redirects and every read included."""

    source: str
    url: str
    seconds: float
    expires_at: float

    @classmethod
    def start(cls, source: str, url: str, seconds: float) -> Deadline:
        """A deadline of ``seconds`` from now."""
        return cls(source, url, seconds, time.monotonic() + seconds)

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.expires_at - time.monotonic()

    def check(self, received: int) -> None:
        """Raise a ``timeout`` error once the deadline has passed."""
        if self.remaining() <= 0:
            raise self.exceeded(f"{received} bytes received")

    def exceeded(self, detail: str) -> TimeoutFetchError:
        """The error of an attempt that ran out of time."""
        return TimeoutFetchError(
            self.source, self.url, f"no complete answer within the {self.seconds:g} s deadline ({detail})"
        )

    def timeout(self, base: httpx.Timeout) -> httpx.Timeout:
        """``base`` with every phase shortened to what is left of the deadline."""
        left = max(self.remaining(), 0.001)

        def cap(value: float | None) -> float:
            return left if value is None else min(value, left)

        return httpx.Timeout(connect=cap(base.connect), read=cap(base.read), write=cap(base.write), pool=cap(base.pool))


def make_client(settings: Settings | None = None, read_timeout_s: float | None = None) -> httpx.Client:
    """An httpx client with Headwater's timeouts and user agent.

    ``read_timeout_s`` lengthens the read timeout for APIs that answer only once a
    long server-side query has run (e.g. Overpass); it never shortens the default,
    and a request's total deadline stretches to it. The client does not follow
    redirects itself: ``get`` and ``download_file`` do, origin-aware.
    """
    settings = settings or get_settings()
    read = max(settings.http_timeout_s, read_timeout_s or 0.0)
    return httpx.Client(
        timeout=httpx.Timeout(settings.http_timeout_s, read=read),
        headers={"User-Agent": settings.http_user_agent, "Accept-Encoding": API_ENCODINGS},
        follow_redirects=False,
    )


def is_credential_header(name: str) -> bool:
    """Whether a header may carry a credential (Authorization, X-API-Key, Cookie, *token*, …)."""
    lowered = name.lower()
    return any(marker in lowered for marker in CREDENTIAL_MARKERS)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default_port = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default_port


def _redirected(previous: httpx.Request, following: httpx.Request) -> httpx.Request:
    """The redirect's request, without credential headers when it leaves ``previous``'s origin."""
    if _origin(following.url) != _origin(previous.url):
        for name in [n for n in following.headers if is_credential_header(n)]:
            del following.headers[name]
    return following


def _retry_after_s(response: httpx.Response) -> float | None:
    """Seconds the server asks us to wait; ``None`` when absent or unparseable."""
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    try:
        parsed = email.utils.parsedate_to_datetime(value)
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        return max(0.0, parsed.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


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
    """The start of an error response's body on one line (APIs explain 4xx there); reads a few KiB at most."""
    if response.is_stream_consumed:
        head = response.content[:EXCERPT_BYTES]
    else:
        collected = bytearray()
        try:
            for chunk in _decoded_chunks(response):
                collected += chunk
                if len(collected) >= EXCERPT_BYTES:
                    break
        except httpx.HTTPError:
            return ""
        head = bytes(collected[:EXCERPT_BYTES])
    text = head.decode(response.charset_encoding or "utf-8", errors="replace")
    return " ".join(text.split())[:limit]


def _inflater(response: httpx.Response) -> zlib._Decompress | None:
    """A zlib decompressor for the response's Content-Encoding, ``None`` for identity."""
    header = response.headers.get("Content-Encoding", "")
    codings = [c.strip().lower() for c in header.split(",") if c.strip().lower() not in ("", "identity")]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in _WBITS:
        return zlib.decompressobj(_WBITS[codings[0]])
    raise httpx.DecodingError(f"unsupported Content-Encoding {header!r}")


def _inflate(inflater: zlib._Decompress, data: bytes) -> Iterator[bytes]:
    """Inflate ``data`` at most ``CHUNK_BYTES`` at a time, so a bomb never sits in memory whole."""
    while True:
        try:
            out = inflater.decompress(data, CHUNK_BYTES)
        except zlib.error as error:
            raise httpx.DecodingError(f"could not inflate the body: {error}") from error
        data = inflater.unconsumed_tail
        if out:
            yield out
        if not data and len(out) < CHUNK_BYTES:
            return


def _decoded_chunks(response: httpx.Response, deadline: Deadline | None = None) -> Iterator[bytes]:
    """The body's decoded bytes in bounded chunks, checking ``deadline`` after every read."""
    inflater = _inflater(response)
    for raw in response.iter_raw():
        if deadline is not None:
            deadline.check(response.num_bytes_downloaded)
        if inflater is None:
            yield raw
        else:
            yield from _inflate(inflater, raw)


def _capped(chunks: Iterable[bytes], cap: int, overflow: Callable[[int], HeadwaterError]) -> Iterator[bytes]:
    """Pass ``chunks`` through up to ``cap`` bytes in all, then raise ``overflow(bytes seen)``."""
    seen = 0
    for chunk in chunks:
        before, seen = seen, seen + len(chunk)
        if seen > cap:
            if cap > before:
                yield chunk[: cap - before]
            raise overflow(seen)
        yield chunk


def _write(url: str, chunks: Iterable[bytes], dest: Path) -> DownloadedFile:
    digest = hashlib.sha256()
    size = 0
    with dest.open("wb") as out:
        for chunk in chunks:
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return DownloadedFile(url=url, path=dest, bytes=size, sha256=digest.hexdigest())


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
def _translate_errors(deadline: Deadline) -> Iterator[None]:
    source, url = deadline.source, deadline.url
    try:
        yield
    except httpx.TimeoutException as error:
        detail = f"{type(error).__name__}: {error}"
        raise (
            deadline.exceeded(detail) if deadline.remaining() <= 0 else TimeoutFetchError(source, url, detail)
        ) from error
    except httpx.TransportError as error:
        raise TransientFetchError(source, url, f"{type(error).__name__}: {error}") from error
    except httpx.DecodingError as error:
        raise FetchError(source, url, f"could not decode the body: {error}") from error


@contextmanager
def _open(
    client: httpx.Client,
    deadline: Deadline,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Iterator[httpx.Response]:
    """A GET's final response, body unread, status checked; redirects followed origin-aware."""
    with _translate_errors(deadline):
        request = client.build_request("GET", deadline.url, params=params, headers=headers)
        for _hop in range(MAX_REDIRECTS + 1):
            deadline.check(0)
            request.extensions["timeout"] = deadline.timeout(client.timeout).as_dict()
            RATE_LIMITER.wait(str(request.url), host_rate(str(request.url)))
            response = client.send(request, stream=True, follow_redirects=False)
            if response.next_request is None:
                break
            response.close()
            request = _redirected(request, response.next_request)
        else:
            raise FetchError(deadline.source, deadline.url, f"more than {MAX_REDIRECTS} redirects")
        try:
            raise_for_status(deadline.source, str(response.url), response)
            yield response
        finally:
            response.close()


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


def _request_deadline_s(client: httpx.Client, settings: Settings) -> float:
    """An API request's deadline: the setting, plus what a slow API's client adds to the read timeout."""
    lengthened = max(0.0, (client.timeout.read or 0.0) - settings.http_timeout_s)
    return settings.http_request_deadline_s + lengthened


def get(
    source: str,
    url: str,
    *,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    client: httpx.Client | None = None,
) -> httpx.Response:
    """GET with the retry policy and the host's rate limit; raises the matching Headwater error.

    Each attempt is bounded by ``http_request_deadline_s`` and the body (decoded) by
    ``http_max_body_bytes`` (``BodyTooLargeError``). The returned response is read.
    """
    settings = get_settings()
    cap = settings.http_max_body_bytes

    def attempt(http: httpx.Client) -> httpx.Response:
        deadline = Deadline.start(source, url, _request_deadline_s(http, settings))
        with _open(http, deadline, params, headers) as response:
            final_url = str(response.url)
            chunks = _decoded_chunks(response, deadline)
            body = b"".join(_capped(chunks, cap, lambda seen: BodyTooLargeError(source, final_url, cap, seen)))
        response._content = body  # the body, read within its bounds, as httpx's own read() stores it
        return response

    return _retried(client, attempt)


def paginate(fetch_page: Callable[[int], tuple[T, int]], first: int = 1) -> Iterator[T]:
    """Yield pages from ``fetch_page(n) -> (page, total_pages)`` until the last page."""
    page = first
    while True:
        content, pages = fetch_page(page)
        yield content
        if page >= pages:
            return
        page += 1


def download_deadline_s(expected_bytes: int | None, settings: Settings | None = None) -> float:
    """Total time one download attempt may take: ``expected_bytes`` at the minimum rate, at least the minimum."""
    settings = settings or get_settings()
    by_size = (expected_bytes or 0) / settings.http_download_min_rate_bytes_s
    return max(settings.http_download_deadline_min_s, by_size)


def _download_cap(
    source: str, url: str, expected_bytes: int | None, max_bytes: int
) -> tuple[int, Callable[[int], HeadwaterError]]:
    """How many bytes a download may write, and the error once it receives more."""
    if expected_bytes is None:
        return max_bytes, lambda seen: BodyTooLargeError(source, url, max_bytes, seen)
    return expected_bytes, lambda seen: IntegrityError(
        source, f"{url}: size mismatch: expected {expected_bytes} bytes, received more (stopped after {seen} bytes)"
    )


def _local_chunks(source: str, url: str) -> Iterator[bytes]:
    origin = Path(unquote(urlparse(url).path))
    if not origin.is_file():
        raise NotFoundError(source, url, "no such file")

    def chunks() -> Iterator[bytes]:
        with origin.open("rb") as src:
            while chunk := src.read(CHUNK_BYTES):
                yield chunk

    return chunks()


def download_file(
    source: str,
    url: str,
    dest: Path,
    client: httpx.Client | None = None,
    *,
    expected_bytes: int | None = None,
    max_bytes: int | None = None,
) -> DownloadedFile:
    """Stream ``url`` (http, https or file) to ``dest``, hashing on the way, with retries.

    A retry restarts the file from its first byte, so a broken transfer never leaves
    a mixed file behind. Reads are bounded: with ``expected_bytes`` (a manifest-listed
    file) the download stops with an ``IntegrityError`` as soon as it receives more,
    otherwise at ``max_bytes`` (default ``http_max_body_bytes``) with a
    ``BodyTooLargeError``; never more than that is written. Each attempt must finish
    within ``download_deadline_s(expected_bytes)``.
    """
    settings = get_settings()
    cap, overflow = _download_cap(source, url, expected_bytes, max_bytes or settings.http_max_body_bytes)
    if urlparse(url).scheme == "file":
        return _write(url, _capped(_local_chunks(source, url), cap, overflow), dest)
    deadline_s = download_deadline_s(expected_bytes, settings)

    def attempt(http: httpx.Client) -> DownloadedFile:
        deadline = Deadline.start(source, url, deadline_s)
        with _open(http, deadline, headers=IDENTITY) as response:
            return _write(url, _capped(_decoded_chunks(response, deadline), cap, overflow), dest)

    return _retried(client, attempt)
