"""Catalog feeds: a JSON-LD brand registry and a product feed per ingestor (``ingestion.yaml``).

Two sources share the ``catalog`` database and the ledger instance ``catalog-<name>``:
``catalog_registry`` (organizations, brands, categories) and ``catalog_feed`` (product
groups, products, offers, the feed's categories, and the quarantine of refused items).
Every table is partitioned by ``(ingestor, stage)``, so each stage of a run replaces
exactly its own rows, and a ledger row records each stage.

Documents are read locally (a path) or remotely (through the one HTTP layer). A feed
may be sharded: an index that is a schema.org ``DataFeed`` whose elements are
``DataDownload`` nodes with a ``contentUrl`` (relative to the index, or absolute) is
read shard by shard. No public sharded-feed format exists; this one follows the
schema.org vocabulary.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname

import pandera.polars as pa
import polars as pl
from clickhouse_connect.driver.client import Client

from headwater.api_batch import FetchResult, open_spools
from headwater.bodies import json_document
from headwater.catalog.items import Feed, FeedTally, Registry, parse_feed, parse_registry
from headwater.catalog.jsonld import first, nodes, text, walk
from headwater.catalog.vectors import VECTOR_INDEX, Embedder, Vectors, stored_vectors, vector_rows
from headwater.errors import FetchError, NotFoundError, QualityError
from headwater.http import get
from headwater.loading import qualified
from headwater.settings import Settings
from headwater.spec import SourceSpec
from headwater.tables import TableSpec

MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
DATABASE = "catalog"


class CatalogTable(pa.DataFrameModel):
    """Columns every catalog table carries: the ingestor and the stage that wrote the row (the partition)."""

    ingestor: str = pa.Field(str_matches=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
    stage: str = pa.Field(isin=["registry", "feed", "vectors"])

    class Config:
        strict = True
        coerce = True


class Organizations(CatalogTable):
    """``catalog.organizations``: the registry's organizations."""

    org_id: str = pa.Field(str_length={"min_value": 1})
    name: str = pa.Field(str_length={"min_value": 1})
    url: str = pa.Field(nullable=True)
    description: str = pa.Field(nullable=True)


class Brands(CatalogTable):
    """``catalog.brands``: the registry's brands, by ``@id`` (else url, else name)."""

    brand_id: str = pa.Field(str_length={"min_value": 1})
    name: str = pa.Field(str_length={"min_value": 1})
    url: str = pa.Field(nullable=True)
    logo: str = pa.Field(nullable=True)
    org_id: str
    category: str = pa.Field(nullable=True)


class Categories(CatalogTable):
    """``catalog.categories``: registry categories (``cmp:category``, ``category``) and the products' ``category``."""

    name: str = pa.Field(str_length={"min_value": 1})


class ProductGroups(CatalogTable):
    """``catalog.product_groups``: ``ProductGroup`` nodes whose variants were accepted."""

    group_id: str = pa.Field(str_length={"min_value": 1})
    name: str = pa.Field(str_length={"min_value": 1})
    description: str = pa.Field(nullable=True)
    brand_name: str = pa.Field(nullable=True)
    brand_id: str = pa.Field(nullable=True)
    varies_by: str
    category: str = pa.Field(nullable=True)


class Products(CatalogTable):
    """``catalog.products``: one accepted item per ``sku`` (a product or a group's variant)."""

    sku: str = pa.Field(str_length={"min_value": 1})
    name: str = pa.Field(str_length={"min_value": 1})
    description: str = pa.Field(nullable=True)
    brand_name: str = pa.Field(nullable=True)
    brand_id: str = pa.Field(nullable=True)
    gtin: str = pa.Field(nullable=True, str_matches=r"^\d{14}$")
    group_id: str = pa.Field(nullable=True)
    category: str = pa.Field(nullable=True)
    url: str = pa.Field(nullable=True)
    image: str = pa.Field(nullable=True)
    deleted_at: Annotated[pl.Datetime, "ms", "UTC"] = pa.Field(nullable=True)  # absent from the last complete feed


class Offers(CatalogTable):
    """``catalog.offers``: the offers of accepted items, linked to their product by ``sku``."""

    sku: str = pa.Field(str_length={"min_value": 1})
    offer_index: int = pa.Field(ge=0)
    offer_type: str = pa.Field(isin=["Offer", "AggregateOffer"])
    price: float = pa.Field(ge=0, nullable=True)
    low_price: float = pa.Field(ge=0, nullable=True)
    high_price: float = pa.Field(ge=0, nullable=True)
    price_currency: str = pa.Field(nullable=True, str_matches=r"^[A-Z]{3}$")
    offer_count: int = pa.Field(ge=0, nullable=True)
    availability: str = pa.Field(nullable=True)
    item_condition: str = pa.Field(nullable=True)
    url: str = pa.Field(nullable=True)


class Quarantine(CatalogTable):
    """``catalog.quarantine``: refused items with their reason and their JSON-LD, never loaded elsewhere."""

    item_index: int = pa.Field(ge=0)
    item: str
    reason: str = pa.Field(str_length={"min_value": 1})
    document: str


class ProductVectors(CatalogTable):
    """``catalog.product_vectors``: one embedding per product, with the hash of its text and the model."""

    sku: str = pa.Field(str_length={"min_value": 1})
    text_hash: str = pa.Field(str_matches=r"^[0-9a-f]{64}$")
    model: str = pa.Field(str_length={"min_value": 1})
    embedded_at: Annotated[pl.Datetime, "ms", "UTC"]
    embedding: Annotated[pl.List, pl.Float32()]


ORGANIZATIONS = TableSpec("organizations", Organizations, key=("org_id",))
BRANDS = TableSpec("brands", Brands, key=("brand_id",))
CATEGORIES = TableSpec("categories", Categories, key=("name",))
PRODUCT_GROUPS = TableSpec("product_groups", ProductGroups, key=("group_id",))
PRODUCTS = TableSpec("products", Products, key=("sku",))
OFFERS = TableSpec("offers", Offers, key=("sku", "offer_index"))
QUARANTINE = TableSpec("quarantine", Quarantine, key=("item_index",))
PRODUCT_VECTORS = TableSpec(
    "product_vectors",
    ProductVectors,
    key=("sku",),
    indexes=(f"INDEX vi embedding TYPE {VECTOR_INDEX}",),
    insert_block_rows=8192,  # 384 floats a row: about 13 MB a block
)

CATALOG_REGISTRY = SourceSpec(
    name="catalog_registry",
    partition_columns=("ingestor", "stage"),
    tables={t.name: t for t in (ORGANIZATIONS, BRANDS, CATEGORIES)},
)
CATALOG_VECTORS = SourceSpec(
    name="catalog_vectors", partition_columns=("ingestor", "stage"), tables={"product_vectors": PRODUCT_VECTORS}
)
CATALOG_FEED = SourceSpec(
    name="catalog_feed",
    partition_columns=("ingestor", "stage"),
    tables={t.name: t for t in (PRODUCT_GROUPS, PRODUCTS, OFFERS, CATEGORIES, QUARANTINE)},
)


def catalog_database(settings: Settings) -> str:
    """The catalog's ClickHouse database: ``HEADWATER_DATABASES["catalog"]``, else ``catalog``."""
    return settings.databases.get("catalog", DATABASE)


def read_body(label: str, location: str) -> tuple[bytes, str]:
    """A document's bytes from a path or an http(s) URL, and where they were read from."""
    if location.startswith(("http://", "https://")):
        response = get(label, location)
        return response.content, str(response.url)
    path = Path(location)
    if not path.is_file():
        raise NotFoundError(label, location, "expected a JSON-LD file, found none")
    if path.stat().st_size > MAX_DOCUMENT_BYTES:
        raise FetchError(label, location, f"expected at most {MAX_DOCUMENT_BYTES} bytes, found more")
    return path.read_bytes(), location


def read_document(label: str, location: str) -> tuple[Any, str]:
    """A JSON-LD document from a path or an http(s) URL, and where it was read from."""
    body, where = read_body(label, location)
    return json_document(label, where, body, "a JSON-LD document"), where


@dataclass(frozen=True)
class Shard:
    """One document of a feed (the whole feed, or one shard of a sharded one), read but not parsed."""

    label: str
    ingestor: str
    where: str
    body: bytes
    document: Any = None  # the decoded body when the caller already has it

    @property
    def sha256(self) -> str:
        """The shard's content hash: with the registry's fingerprint, the key of its parsed rows."""
        return hashlib.sha256(self.body).hexdigest()


def parse_shard(shard: Shard, registry: Registry) -> Feed:
    """A shard's accepted and quarantined items, parsed on its own."""
    document = shard.document
    if document is None:
        document = json_document(shard.label, shard.where, shard.body, "a JSON-LD document")
    return parse_feed(document, shard.ingestor, registry)


ShardParser = Callable[[Shard, Registry], tuple[Feed, bool]]
"""Parses a shard, or returns its rows kept from an earlier run; says whether it parsed."""


def parse_every_shard(shard: Shard, registry: Registry) -> tuple[Feed, bool]:
    """The parser without a cache (Python users, tests of the parser): every shard is parsed."""
    return parse_shard(shard, registry), True


def registry_batch(label: str, ingestor: str, location: str) -> tuple[FetchResult, Registry]:
    """The registry stage's batch, and the registry the feed resolves brands against."""
    document, _ = read_document(label, location)
    registry = parse_registry(document, ingestor)
    if not registry.organizations and not registry.brands:
        raise FetchError(label, location, "expected an Organization or Brand node, found none")
    frames = {
        "organizations": ORGANIZATIONS.frame(registry.organizations),
        "brands": BRANDS.frame(registry.brands),
        "categories": CATEGORIES.frame(registry.categories),
    }
    return FetchResult(frames=frames, notes={"brands": len(registry.brands)}), registry


def shard_locations(document: Any, location: str) -> list[str] | None:
    """The shards of a sharded feed index (``DataFeed`` of ``DataDownload`` nodes), or None for a plain feed."""
    downloads = list(walk(nodes(document), {"DataDownload"}))
    if not downloads:
        return None
    found = []
    for download in downloads:
        url = text(first(download, "contentUrl"))
        if url:
            found.append(urljoin(location if "://" in location else Path(location).as_uri(), url))
    return [url2pathname(urlsplit(u).path) if u.startswith("file://") else u for u in found]


def feed_documents(label: str, ingestor: str, location: str) -> tuple[list[str] | None, Iterator[Shard]]:
    """A feed's shards (None for a plain feed) and its documents, each read when the iterator reaches it."""
    body, where = read_body(label, location)
    index = json_document(label, where, body, "a JSON-LD document")
    shards = shard_locations(index, where)
    if shards is None:
        return None, iter([Shard(label, ingestor, where, body, index)])

    def read(locations: list[str]) -> Iterator[Shard]:
        for shard in locations:
            content, found = read_body(label, shard)
            yield Shard(label, ingestor, found, content)

    return shards, read(shards)


@dataclass(frozen=True)
class FeedRules:
    """How a feed stage judges and keeps: the quality threshold, and how long soft-deleted products stay."""

    threshold: float
    keep_deleted: timedelta
    now: datetime


StoredChunk = list[tuple[str, datetime | None]]
"""Stored products, by sku: when each was deleted (None: live)."""


@dataclass(frozen=True)
class StoredProducts:
    """The ingestor's products in the warehouse: a scan of them chunk by chunk, and a reader of their rows."""

    scan: Callable[[], Iterable[StoredChunk]]
    read: Callable[[list[str]], list[dict[str, Any]]]


FEED_TABLES = ("product_groups", "products", "offers", "categories", "quarantine")


def feed_batch(
    label: str,
    ingestor: str,
    location: str,
    registry: Registry,
    rules: FeedRules,
    stored: StoredProducts | None = None,
    parse: ShardParser = parse_every_shard,
) -> FetchResult:
    """The feed stage's batch: accepted items, their offers, the quarantine; written shard by shard.

    Each shard is parsed on its own by ``parse`` (the flow's keeps the rows of a shard
    whose content and registry are unchanged), admitted in the index's order (a sku an
    earlier shard has is refused) and spooled to Parquet, so memory holds one shard at a
    time. A feed is complete: a ``stored`` product it no longer lists is kept with
    ``deleted_at`` set (soft-deleted, no offers, no vector) until it is older than
    ``rules.keep_deleted``, then dropped; the stored products are scanned chunk by chunk
    against the feed's skus, so only the missing ones are held. QualityError when the share of accepted items
    is under ``rules.threshold``; nothing is published then.
    """
    shards, documents = feed_documents(label, ingestor, location)
    tally, parsed = FeedTally(), 0
    with open_spools(CATALOG_FEED, FEED_TABLES) as spools:
        for shard in documents:
            rows, fresh = parse(shard, registry)
            parsed += fresh
            offset = tally.rejected
            admitted = tally.admit(rows)
            spools["product_groups"].append(admitted.product_groups)
            spools["products"].append(admitted.products)
            spools["offers"].append(admitted.offers)
            spools["categories"].append(admitted.categories)
            spools["quarantine"].append([dict(r, item_index=offset + i) for i, r in enumerate(admitted.quarantine)])
        if tally.items == 0:
            raise FetchError(label, location, "expected Product or ProductGroup items, found none")
        if tally.quality_score < rules.threshold:
            reasons = "; ".join(f"{q['item']}: {q['reason']}" for q in tally.examples)
            raise QualityError(
                label,
                f"{tally.rejected} of {tally.items} items refused (quality {tally.quality_score:.2f}, "
                f"threshold {rules.threshold:.2f}), e.g. {reasons}",
            )
        kept, expired = soft_deleted(tally.skus, stored.scan(), rules) if stored else ({}, 0)
        missing = sorted(kept)
        for start in range(0, len(missing), READ_CHUNK):
            again = stored.read(missing[start : start + READ_CHUNK]) if stored else []
            spools["products"].append([{**row, "deleted_at": kept[row["sku"]]} for row in again])
    notes: dict[str, Any] = {"items": tally.items, "soft_deleted": len(kept)}
    if expired:
        notes["expired"] = expired
    if tally.unresolved_brands:
        notes["unresolved_brands"] = tally.unresolved_brands
    if shards is not None:
        notes["shards"] = len(shards)
    return FetchResult(
        frames=dict(spools),
        rows_rejected=tally.rejected,
        quality_score=tally.quality_score,
        notes=notes,
        stats={"documents_parsed": parsed},
    )


READ_CHUNK = 2000
"""Rows read back from the warehouse at a time (kept soft-deleted products, products to embed)."""


def soft_deleted(listed: set[str], stored: Iterable[StoredChunk], rules: FeedRules) -> tuple[dict[str, datetime], int]:
    """Stored products missing from this feed, with when they were deleted; and how many expired."""
    kept, expired = {}, 0
    for sku, stored_at in itertools.chain.from_iterable(stored):
        if sku in listed:
            continue
        deleted_at = stored_at or rules.now
        if deleted_at.tzinfo is None:  # the client reads DateTime64(3, 'UTC') as naive UTC
            deleted_at = deleted_at.replace(tzinfo=UTC)
        if rules.now - deleted_at > rules.keep_deleted:
            expired += 1
            continue
        kept[sku] = deleted_at
    return kept, expired


def stored_products(client: Client, database: str, ingestor: str, after: str = "") -> StoredChunk:
    """Up to ``READ_CHUNK`` of the ingestor's stored products after the sku ``after``, in sku order.

    With when each was deleted (None: live); empty past the last one and before the first load.
    """
    table = qualified(database, "products")
    if not client.command(f"EXISTS TABLE {table}"):
        return []
    result = client.query(
        f"SELECT sku, deleted_at FROM {table} WHERE ingestor = {{i:String}} AND sku > {{after:String}} "
        f"ORDER BY sku LIMIT {READ_CHUNK}",
        parameters={"i": ingestor, "after": after},
    )
    return [(str(sku), deleted_at) for sku, deleted_at in result.result_rows]


def product_rows(client: Client, database: str, ingestor: str, skus: list[str]) -> list[dict[str, Any]]:
    """The stored rows of some of the ingestor's products."""
    names = PRODUCTS.column_names
    result = client.query(
        f"SELECT {', '.join(names)} FROM {qualified(database, 'products')} "
        "WHERE ingestor = {i:String} AND sku IN {skus:Array(String)}",
        parameters={"i": ingestor, "skus": skus},
    )
    return [dict(zip(names, row, strict=True)) for row in result.result_rows]


TEXT_ORDER = ("name", "ifNull(description, '')", "ifNull(brand_name, '')", "ifNull(category, '')", "sku")
"""The order the vectors stage reads products in: by their text's parts (equal texts are neighbours), then sku."""


def live_products(client: Client, database: str, ingestor: str) -> Iterator[list[dict[str, Any]]]:
    """The ingestor's live products in chunks of ``READ_CHUNK``, in ``TEXT_ORDER``.

    Each chunk starts after the last one's position (keyset paging), so a chunk costs
    the same wherever it is in the catalog.
    """
    names = ("sku", "name", "description", "brand_name", "category")
    order = ", ".join(TEXT_ORDER)
    after: tuple[str, ...] | None = None
    while True:
        result = client.query(
            f"SELECT {', '.join(names)}, {order} FROM {qualified(database, 'products')} "
            "WHERE ingestor = {i:String} AND deleted_at IS NULL"
            + (f" AND ({order}) > {{after:Tuple(String, String, String, String, String)}}" if after else "")
            + f" ORDER BY {order} LIMIT {READ_CHUNK}",
            parameters={"i": ingestor, "after": after},
        )
        rows = result.result_rows
        if not rows:
            return
        after = tuple(str(v) for v in rows[-1][len(names) :])
        yield [dict(zip(names, row[: len(names)], strict=True)) for row in rows]


def vectors_batch(client: Client, database: str, ingestor: str, embedder: Embedder, now: datetime) -> FetchResult:
    """The vectors stage's batch: every live product's vector, embedding only changed texts, chunk by chunk.

    Products are read back from the warehouse (the feed stage just published them), so
    memory holds one chunk of products and vectors at a time.
    """
    embedded = 0
    recent: dict[str, Any] = {}  # the last chunk's texts: an equal text across a chunk boundary is embedded once
    with open_spools(CATALOG_VECTORS, ["product_vectors"]) as spools:
        for products in live_products(client, database, ingestor):
            stored = stored_vectors(client, database, ingestor, [p["sku"] for p in products])
            rows, count, recent = vector_rows(products, stored, embedder, now, recent)
            embedded += count
            spools["product_vectors"].append(vector_frame(rows, ingestor, embedder.model))
    return FetchResult(frames=dict(spools), notes={"model": embedder.model}, stats={"embedded": embedded})


def vector_frame(vectors: Vectors, ingestor: str, model: str) -> pl.DataFrame:
    """A chunk's rows of ``catalog.product_vectors``, built column by column (no Python float per value)."""
    rows = len(vectors.skus)
    embeddings = pl.Series("embedding", vectors.embeddings).cast(pl.List(pl.Float32))
    return pl.DataFrame(
        {
            "ingestor": [ingestor] * rows,
            "stage": ["vectors"] * rows,
            "sku": vectors.skus,
            "text_hash": vectors.text_hashes,
            "model": [model] * rows,
            "embedded_at": pl.Series(vectors.embedded_at, dtype=pl.Datetime("ms", "UTC")),
            "embedding": embeddings,
        },
        schema=PRODUCT_VECTORS.polars_schema,
    )


def stored_ingestors(client: Client, database: str) -> list[str]:
    """The ingestors with rows in any catalog table, sorted."""
    found: set[str] = set()
    for spec in (CATALOG_REGISTRY, CATALOG_FEED, CATALOG_VECTORS):
        for name in spec.tables:
            table = qualified(database, name)
            if client.command(f"EXISTS TABLE {table}"):
                found |= {str(r[0]) for r in client.query(f"SELECT DISTINCT ingestor FROM {table}").result_rows}
    return sorted(found)


def cleanup_backlog(client: Client, database: str, ingestor: str, cutoff: datetime) -> dict[str, int]:
    """What the cleanup removes for one ingestor: rows per kind (zero when it is clean).

    Expired soft-deleted products (deleted before ``cutoff``), and offers, vectors,
    product groups and feed categories that no live product (``deleted_at`` unset) uses.
    """
    products = qualified(database, "products")
    live = f"{products} WHERE ingestor = {{i:String}} AND deleted_at IS NULL"
    groups = qualified(database, "product_groups")
    queries = {
        "expired products": f"SELECT count() FROM {products} WHERE ingestor = {{i:String}} "
        "AND deleted_at IS NOT NULL AND deleted_at < {cutoff:DateTime64(3, 'UTC')}",
        "orphaned offers": f"SELECT count() FROM {qualified(database, 'offers')} WHERE ingestor = {{i:String}} "
        f"AND sku NOT IN (SELECT sku FROM {live})",
        "orphaned vectors": f"SELECT count() FROM {qualified(database, 'product_vectors')} "
        f"WHERE ingestor = {{i:String}} AND sku NOT IN (SELECT sku FROM {live})",
        "orphaned groups": f"SELECT count() FROM {groups} WHERE ingestor = {{i:String}} "
        f"AND group_id NOT IN (SELECT assumeNotNull(group_id) FROM {live} AND group_id IS NOT NULL)",
        "orphaned categories": f"SELECT count() FROM {qualified(database, 'categories')} "
        "WHERE ingestor = {i:String} AND stage = 'feed' "
        f"AND name NOT IN (SELECT assumeNotNull(category) FROM {live} AND category IS NOT NULL "
        f"UNION ALL SELECT assumeNotNull(category) FROM {groups} WHERE ingestor = {{i:String}} "
        "AND category IS NOT NULL)",
    }
    tables = {
        "expired products": "products",
        "orphaned offers": "offers",
        "orphaned vectors": "product_vectors",
        "orphaned groups": "product_groups",
        "orphaned categories": "categories",
    }
    backlog = {}
    for kind, sql in queries.items():
        exists = client.command(f"EXISTS TABLE {qualified(database, tables[kind])}")
        backlog[kind] = (
            int(client.query(sql, parameters={"i": ingestor, "cutoff": cutoff}).result_rows[0][0]) if exists else 0
        )
    return backlog
