"""Response bodies as data: JSON and CSV parsed with one-line errors that name the source and the URL.

A truncated or garbled body (a proxy's error page, a connection cut mid-transfer) is a
``FetchError`` of the run: its message says which source, which URL, what was expected
and what was found, on one line, and the ledger records it as ``fetch_failed``.
"""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import polars as pl

from headwater.errors import FetchError


def json_body(source: str, response: httpx.Response, what: str = "JSON") -> Any:
    """The response's JSON document; FetchError naming the URL and where the document breaks otherwise."""
    return json_document(source, str(response.url), response.content, what)


def json_document(source: str, url: str, body: bytes, what: str = "JSON") -> Any:
    """A body (a response's, a file's) as JSON; FetchError naming where it came from and where it breaks."""
    try:
        return json.loads(body)
    except ValueError as error:
        found = " ".join(body[:120].decode("utf-8", "replace").split())
        raise FetchError(source, url, f"expected {what}, found {found!r}… ({error})") from None


def csv_frame(source: str, url: str, body: bytes, what: str) -> pl.DataFrame:
    """A CSV body as a frame of strings; FetchError with the parser's first line otherwise."""
    try:
        return pl.read_csv(io.BytesIO(body), infer_schema=False)
    except pl.exceptions.PolarsError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        found = " ".join(body[:120].decode("utf-8", "replace").split())
        raise FetchError(source, url, f"expected {what}, found {found!r}… ({reason})") from None
