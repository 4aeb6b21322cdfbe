"""The errors Headwater raises.

Each names the source, the file or URL, what was expected and what was found, and
carries a stable ``kind`` for the run ledger.
"""

from __future__ import annotations


class HeadwaterError(Exception):
    """Base of every error a pipeline run reports on purpose.

    ``kind`` is a stable, machine-readable label stored in the ledger;
    ``str(error)`` is the one-line human reason.
    """

    kind = "error"
    transient = False

    def __init__(self, source: str, message: str) -> None:
        self.source = source
        self.message = message
        super().__init__(f"{source}: {message}")


class FetchError(HeadwaterError):
    """An HTTP request failed with a non-retryable answer (4xx) or for good."""

    kind = "fetch_failed"

    def __init__(self, source: str, url: str, message: str, status: int | None = None) -> None:
        self.url = url
        self.status = status
        super().__init__(source, f"{url}: {message}")


class NotFoundError(FetchError):
    """The server answered 404: the file or export does not exist (yet)."""

    kind = "not_found"


class TransientFetchError(FetchError):
    """A failure worth retrying: connection errors, timeouts, 429 and 5xx."""

    kind = "transient_fetch_failed"
    transient = True

    def __init__(
        self,
        source: str,
        url: str,
        message: str,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(source, url, message, status)


class TimeoutFetchError(TransientFetchError):
    """An attempt did not finish within its total deadline or a read timed out (retried)."""

    kind = "timeout"


class BodyTooLargeError(FetchError):
    """A response body grew past its size cap; reading stopped there (not retried)."""

    kind = "body_too_large"

    def __init__(self, source: str, url: str, cap: int, seen: int) -> None:
        self.cap = cap
        self.seen = seen
        super().__init__(source, url, f"body larger than the cap of {cap} bytes (stopped after {seen} bytes)")


class ManifestError(HeadwaterError):
    """META.json is missing, malformed, or disagrees with the request or the contract."""

    kind = "manifest_invalid"


class IntegrityError(HeadwaterError):
    """A downloaded file does not match its manifest entry (size, hash, rows, format)."""

    kind = "integrity_failed"


class SchemaViolation(HeadwaterError):
    """Rows break the table's contract; the message lists every failing check."""

    kind = "schema_violation"


class QualityError(HeadwaterError):
    """Too many items of a batch were quarantined: the batch is refused whole and nothing is published."""

    kind = "quality_below_threshold"


class PublishError(HeadwaterError):
    """Publishing the staged batch failed; already published tables were restored."""

    kind = "publish_failed"


class ConfigurationError(HeadwaterError):
    """Settings or parameters are missing or inconsistent."""

    kind = "configuration"
