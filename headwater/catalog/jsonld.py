"""schema.org JSON-LD as plain nodes, without fetching any context at run time.

What is accepted (real documents vary): ``@context`` as ``https://schema.org``,
``http://schema.org`` (with or without the trailing slash) or an object (``@vocab`` or a
prefix bound to schema.org, whose ``prefix:term`` keys are read as ``term``); a
document that is one node, a list of nodes or an ``@graph``; ``@id`` references to
other nodes of the document; a single value or an array for any property; full
schema.org URLs as values (``https://schema.org/InStock`` → ``InStock``); item-level
``@context``. Keys of other vocabularies stay as written (the legacy registry's
``cmp:category``). HTML in text is reduced to plain text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

SCHEMA_PREFIXES = ("https://schema.org/", "http://schema.org/")
_TAG = re.compile(r"<[^>]+>")
_BREAK = re.compile(r"<\s*(br|/p|/li|/div)\s*/?\s*>", re.IGNORECASE)

Node = dict[str, Any]


def term(value: str) -> str:
    """A schema.org URL or ``schema:`` name as its short term (``InStock``); anything else unchanged."""
    for prefix in SCHEMA_PREFIXES:
        if value.startswith(prefix):
            return value[len(prefix) :]
    return value


def _prefixes(context: Any) -> set[str]:
    """Prefixes a context object binds to schema.org (``schema`` for ``{"schema": "https://schema.org/"}``)."""
    found: set[str] = set()
    for item in context if isinstance(context, list) else [context]:
        if isinstance(item, dict):
            found |= {k for k, v in item.items() if isinstance(v, str) and v.rstrip("/") + "/" in SCHEMA_PREFIXES}
    return found


def normalise(value: Any, prefixes: frozenset[str] = frozenset()) -> Any:
    """Keys as schema.org terms (prefixed and full-URL keys shortened), ``@context`` dropped, recursively."""
    if isinstance(value, list):
        return [normalise(v, prefixes) for v in value]
    if not isinstance(value, dict):
        return value
    local = prefixes | _prefixes(value.get("@context"))
    out: Node = {}
    for key, item in value.items():
        if key == "@context":
            continue
        name = term(key)
        if ":" in name and name.split(":", 1)[0] in local:
            name = name.split(":", 1)[1]
        out[name] = _unprefixed(item, local) if name == "@type" else normalise(item, frozenset(local))
    return out


def _unprefixed(value: Any, prefixes: frozenset[str] | set[str]) -> Any:
    """``@type`` values with a schema.org prefix as terms (``schema:Product`` → ``Product``)."""
    if isinstance(value, list):
        return [_unprefixed(v, prefixes) for v in value]
    if isinstance(value, str) and ":" in value and value.split(":", 1)[0] in prefixes:
        return value.split(":", 1)[1]
    return term(value) if isinstance(value, str) else value


def nodes(document: Any) -> list[Node]:
    """The top-level nodes of a document: itself, its list, or its ``@graph``."""
    document = normalise(document)
    if isinstance(document, dict) and "@graph" in document:
        document = document["@graph"]
    if isinstance(document, dict):
        return [document]
    if isinstance(document, list):
        return [n for n in document if isinstance(n, dict)]
    return []


def index(all_nodes: list[Node]) -> dict[str, Node]:
    """Every node with an ``@id``, at any depth, by its ``@id``."""
    found: dict[str, Node] = {}

    def visit(value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            if isinstance(value.get("@id"), str) and len(value) > 1:
                found.setdefault(value["@id"], value)
            for item in value.values():
                visit(item)

    visit(all_nodes)
    return found


def values(node: Node, prop: str, ids: dict[str, Node] | None = None) -> list[Any]:
    """A property's values as a list (a single value or an array), ``@id`` references resolved."""
    raw = node.get(prop)
    items = raw if isinstance(raw, list) else [] if raw is None else [raw]
    resolved = []
    for item in items:
        reference = isinstance(item, dict) and set(item) == {"@id"} and ids and item["@id"] in ids
        resolved.append(ids[item["@id"]] if reference and ids else item)
    return resolved


def first(node: Node, prop: str, ids: dict[str, Node] | None = None) -> Any:
    """A property's first value, or None."""
    found = values(node, prop, ids)
    return found[0] if found else None


def types(node: Node) -> set[str]:
    """The node's ``@type`` terms."""
    return {term(t) for t in values(node, "@type") if isinstance(t, str)}


def text(value: Any) -> str | None:
    """A text value as plain text: a language map or ``@value`` unwrapped, HTML tags and entities removed."""
    if isinstance(value, dict):
        value = value.get("@value")
    if value is None or isinstance(value, dict | list):
        return None
    plain = html.unescape(_TAG.sub("", _BREAK.sub("\n", str(value))))
    lines = [" ".join(line.split()) for line in plain.splitlines()]
    return "\n".join(line for line in lines if line).strip() or None


def name_of(value: Any) -> str | None:
    """The ``name`` of a node, or a plain string value."""
    if isinstance(value, dict):
        return text(value.get("name"))
    return text(value)


def walk(all_nodes: list[Node], wanted: set[str]) -> Iterator[Node]:
    """Nodes of the wanted types, at the top or in ``DataFeed``/``ItemList`` elements and ``DataFeedItem`` wrappers."""
    for node in all_nodes:
        kinds = types(node)
        if kinds & wanted:
            yield node
        elif kinds & {"DataFeed", "ItemList", "DataFeedItem", "ListItem"}:
            inner = [
                v
                for prop in ("dataFeedElement", "itemListElement", "item")
                for v in values(node, prop)
                if isinstance(v, dict)
            ]
            yield from walk(inner, wanted)
