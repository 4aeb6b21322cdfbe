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

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname

import pandera.polars as pa
import polars as pl
from clickhouse_connect.driver.client import Client

from headwater.api_batch import FetchResult
from headwater.bodies import json_document
from headwater.catalog.items import Feed, Registry, parse_feed, parse_registry
from headwater.catalog.jsonld import first, nodes, text, walk
from headwater.catalog.vectors import VECTOR_INDEX, Embedder, Stored, vector_rows
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


def read_document(label: str, location: str) -> tuple[Any, str]:
    """A JSON-LD document from a path or an http(s) URL, and where it was read from."""
    if location.startswith(("http://", "https://")):
        response = get(label, location)
        body, where = response.content, str(response.url)
    else:
        path = Path(location)
        if not path.is_file():
            raise NotFoundError(label, location, "expected a JSON-LD file, found none")
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            raise FetchError(label, location, f"expected at most {MAX_DOCUMENT_BYTES} bytes, found more")
        body, where = path.read_bytes(), location
    return json_document(label, where, body, "a JSON-LD document"), where


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


@dataclass(frozen=True)
class FeedRules:
    """How a feed stage judges and keeps: the quality threshold, and how long soft-deleted products stay."""

    threshold: float
    keep_deleted: timedelta
    now: datetime


def feed_batch(
    label: str,
    ingestor: str,
    location: str,
    registry: Registry,
    rules: FeedRules,
    previous: dict[str, dict[str, Any]] | None = None,
) -> tuple[FetchResult, Feed]:
    """The feed stage's batch (accepted items, their offers, the quarantine) and the parsed feed.

    A feed is complete: a product of the ``previous`` load that it no longer lists is
    kept with ``deleted_at`` set (soft-deleted, no offers, no vector) until it is older
    than ``rules.keep_deleted``, then dropped. QualityError when the share of accepted
    items is under ``rules.threshold``.
    """
    threshold = rules.threshold
    document, where = read_document(label, location)
    feed = Feed()
    shards = shard_locations(document, where)
    for shard in shards or [where]:
        parse_feed(document if shards is None else read_document(label, shard)[0], ingestor, registry, feed)
    if feed.items == 0:
        raise FetchError(label, location, "expected Product or ProductGroup items, found none")
    if feed.quality_score < threshold:
        reasons = "; ".join(f"{q['item']}: {q['reason']}" for q in feed.quarantine[:3])
        raise QualityError(
            label,
            f"{len(feed.quarantine)} of {feed.items} items refused (quality {feed.quality_score:.2f}, "
            f"threshold {threshold:.2f}), e.g. {reasons}",
        )
    quarantine = [dict(row, item_index=i) for i, row in enumerate(feed.quarantine)]
    kept, expired = soft_deleted(feed, previous or {}, rules)
    frames = {
        "product_groups": PRODUCT_GROUPS.frame(feed.product_groups),
        "products": PRODUCTS.frame(feed.products + kept),
        "offers": OFFERS.frame(feed.offers),
        "categories": CATEGORIES.frame(feed.categories),
        "quarantine": QUARANTINE.frame(quarantine),
    }
    notes: dict[str, Any] = {"items": feed.items, "soft_deleted": len(kept)}
    if expired:
        notes["expired"] = expired
    if feed.unresolved_brands:
        notes["unresolved_brands"] = feed.unresolved_brands
    if shards is not None:
        notes["shards"] = len(shards)
    result = FetchResult(
        frames=frames, rows_rejected=len(feed.quarantine), quality_score=feed.quality_score, notes=notes
    )
    return result, feed


def vectors_batch(
    ingestor: str, feed: Feed, stored: dict[str, Stored], embedder: Embedder, now: datetime
) -> FetchResult:
    """The vectors stage's batch: every accepted product's vector, embedding only changed texts."""
    rows, embedded = vector_rows(feed.products, stored, embedder, ingestor, now)
    return FetchResult(
        frames={"product_vectors": PRODUCT_VECTORS.frame(rows)},
        notes={"model": embedder.model},
        stats={"embedded": embedded},
    )


def soft_deleted(feed: Feed, previous: dict[str, dict[str, Any]], rules: FeedRules) -> tuple[list[dict[str, Any]], int]:
    """Products of the previous load missing from this feed, marked deleted; and how many expired."""
    listed = {p["sku"] for p in feed.products}
    kept, expired = [], 0
    for sku, row in sorted(previous.items()):
        if sku in listed:
            continue
        deleted_at = row.get("deleted_at") or rules.now
        if deleted_at.tzinfo is None:  # the client reads DateTime64(3, 'UTC') as naive UTC
            deleted_at = deleted_at.replace(tzinfo=UTC)
        if rules.now - deleted_at > rules.keep_deleted:
            expired += 1
            continue
        kept.append({**row, "deleted_at": deleted_at})
    return kept, expired


def stored_products(client: Client, database: str, ingestor: str) -> dict[str, dict[str, Any]]:
    """The ingestor's products in the warehouse, by sku (empty before the first load)."""
    table = qualified(database, "products")
    if not client.command(f"EXISTS TABLE {table}"):
        return {}
    names = PRODUCTS.column_names
    result = client.query(
        f"SELECT {', '.join(names)} FROM {table} WHERE ingestor = {{i:String}}", parameters={"i": ingestor}
    )
    return {str(row[names.index("sku")]): dict(zip(names, row, strict=True)) for row in result.result_rows}
