"""Has an ingestor's feed changed? A cheap probe before any run (the legacy ``check_feed_updates``).

Remote: a conditional GET with the ``ETag`` / ``Last-Modified`` seen last (``304`` means
unchanged), then the body's SHA-256 when the server sends no validators. Local: size and
mtime, then the SHA-256 when they moved. The first probe of a feed records a baseline
and reports no change (the ingestor's cron loads it); the probe's state lives in the
ledger (``source_state``, keys ``probe:*``). A sharded feed is probed by its index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from headwater.http import get
from headwater.manifest import sha256_file

PREFIX = "probe:"


@dataclass(frozen=True)
class Probe:
    """A probe's verdict, the state to keep for the next one, and why."""

    changed: bool
    detail: str
    state: dict[str, str] = field(default_factory=dict)


def _verdict(previous: Mapping[str, str], digest: str, state: dict[str, str]) -> Probe:
    before = previous.get(f"{PREFIX}sha256")
    if before is None:
        return Probe(False, "first probe: baseline recorded", state)
    if before == digest:
        return Probe(False, "content unchanged", state)
    return Probe(True, f"content changed ({before[:12]} → {digest[:12]})", state)


def probe_local(path: Path, previous: Mapping[str, str]) -> Probe:
    """A local feed: unchanged when size and mtime are; else judged by its SHA-256."""
    stat = path.stat()
    signature = f"{stat.st_size}:{stat.st_mtime_ns}"
    if previous.get(f"{PREFIX}signature") == signature:
        return Probe(False, "size and mtime unchanged")
    digest = sha256_file(path)
    return _verdict(previous, digest, {f"{PREFIX}signature": signature, f"{PREFIX}sha256": digest})


def probe_remote(label: str, url: str, previous: Mapping[str, str]) -> Probe:
    """A remote feed: a conditional GET; a 200 is judged by its body's SHA-256."""
    headers = {}
    if etag := previous.get(f"{PREFIX}etag"):
        headers["If-None-Match"] = etag
    if modified := previous.get(f"{PREFIX}last_modified"):
        headers["If-Modified-Since"] = modified
    response = get(label, url, headers=headers)
    if response.status_code == 304:
        return Probe(False, "304 Not Modified")
    digest = hashlib.sha256(response.content).hexdigest()
    state = {f"{PREFIX}sha256": digest}
    for header, key in (("ETag", "etag"), ("Last-Modified", "last_modified")):
        if value := response.headers.get(header):
            state[f"{PREFIX}{key}"] = value
    return _verdict(previous, digest, state)
