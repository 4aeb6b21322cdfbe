"""The catalog's cached task: a feed shard parsed once per content, registry and parser.

A shard whose bytes, registry brands and parser code are those of an earlier run is
not parsed again: Prefect returns the rows it kept (state ``Cached``). The feed stage
still rebuilds its whole partition from them, so the publish stays one atomic swap.

Each shard's task runs in a transaction of its own, not as a child of the fetch
task's: a child transaction stays in its parent's list, with its result and its
engine (the shard's bytes among the parameters), until the parent ends, so the feed
stage would hold every shard of the feed. On its own, a shard's result is written to
the cache when its task ends, and nothing of it stays in memory once the feed has
spooled its rows.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from prefect import task
from prefect.context import TaskRunContext
from prefect.transactions import BaseTransaction

from headwater.catalog import items, jsonld
from headwater.catalog.items import Feed, Registry
from headwater.params import TASK_TIMEOUT_S
from headwater.sources.catalog import Shard, parse_shard

PARSER = hashlib.sha256((inspect.getsource(items) + inspect.getsource(jsonld)).encode()).hexdigest()[:16]
"""Fingerprint of the parser's code: a change of it parses every shard again."""


def _shard_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    shard: Shard = parameters["shard"]
    registry: Registry = parameters["registry"]
    return f"catalog-shard-{shard.ingestor}-{shard.sha256}-{registry.fingerprint()[:16]}-{PARSER}"


@task(
    name="parse-shard",
    task_run_name="parse {shard.where}",
    cache_key_fn=_shard_key,
    cache_expiration=timedelta(days=30),
    persist_result=True,
    cache_result_in_memory=False,  # one shard at a time: the flow must not hold every shard's rows
    timeout_seconds=TASK_TIMEOUT_S,
)
def parse_shard_once(shard: Shard, registry: Registry) -> Feed:
    """A shard's accepted and quarantined items (kept by content: see the module)."""
    return parse_shard(shard, registry)


@contextmanager
def own_transaction() -> Iterator[None]:
    """Tasks called in the block get top-level transactions (see the module), then the enclosing one is back."""
    token = BaseTransaction.__var__.set(None)  # type: ignore[arg-type]  # None: no active transaction
    try:
        yield
    finally:
        BaseTransaction.__var__.reset(token)


def cached_shard_parser(shard: Shard, registry: Registry) -> tuple[Feed, bool]:
    """The feed stage's parser: the shard's rows, and whether they were parsed in this run."""
    with own_transaction():
        state = parse_shard_once(shard, registry, return_state=True)
    return state.result(), state.name != "Cached"
