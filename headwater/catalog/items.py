"""Registry and feed documents as rows, validated item by item.

An item is one ``Product`` with its offers; each variant of a ``ProductGroup`` is an
item of its own (it inherits the group's brand, description and category when it has
none). A bad item (no ``@type`` or ``name``, a GTIN whose check digit is wrong, a
currency that is not ISO 4217, a negative or non-numeric price, an availability or
condition outside schema.org's enumerations, a malformed URL, a SKU seen before) goes
to the quarantine with its reason, offers and all; it never fails the feed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pycountry
from stdnum import ean

from headwater.catalog.jsonld import Node, first, index, name_of, nodes, term, text, types, values, walk

AVAILABILITY = frozenset(
    {
        "BackOrder",
        "Discontinued",
        "InStock",
        "InStoreOnly",
        "LimitedAvailability",
        "MadeToOrder",
        "OnlineOnly",
        "OutOfStock",
        "PreOrder",
        "PreSale",
        "Reserved",
        "SoldOut",
    }
)
CONDITIONS = frozenset({"NewCondition", "UsedCondition", "RefurbishedCondition", "DamagedCondition"})
GTIN_PROPERTIES = ("gtin", "gtin14", "gtin13", "gtin12", "gtin8")
PRODUCT_TYPES = {"Product", "ProductGroup", "IndividualProduct", "ProductModel"}


class InvalidItem(ValueError):
    """An item that cannot be loaded; its message is the quarantine reason."""


@dataclass
class Registry:
    """A registry document's rows, and what the feed resolves brands against."""

    organizations: list[dict[str, Any]] = field(default_factory=list)
    brands: list[dict[str, Any]] = field(default_factory=list)
    categories: list[dict[str, Any]] = field(default_factory=list)

    def fingerprint(self) -> str:
        """SHA-256 of what brand resolution reads (a parsed feed depends on it)."""
        brands = sorted((str(r["brand_id"]), str(r["name"])) for r in self.brands)
        return hashlib.sha256(json.dumps(brands).encode()).hexdigest()

    def resolve(self, brand: Any) -> str | None:
        """The registry's ``brand_id`` of a feed's brand: by ``@id``, else by name (case-insensitively)."""
        if isinstance(brand, dict) and isinstance(brand.get("@id"), str):
            for row in self.brands:
                if row["brand_id"] == brand["@id"]:
                    return str(row["brand_id"])
        wanted = (name_of(brand) or "").casefold()
        return next((str(r["brand_id"]) for r in self.brands if wanted and r["name"].casefold() == wanted), None)


@dataclass
class Feed:
    """A feed's accepted rows, its quarantined items and what it counted."""

    product_groups: list[dict[str, Any]] = field(default_factory=list)
    products: list[dict[str, Any]] = field(default_factory=list)
    offers: list[dict[str, Any]] = field(default_factory=list)
    categories: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    unresolved_brands: dict[str, int] = field(default_factory=dict)

    @property
    def items(self) -> int:
        """Items seen: accepted plus quarantined."""
        return len(self.products) + len(self.quarantine)

    @property
    def quality_score(self) -> float:
        """Accepted items / all items (1.0 for an empty feed)."""
        return round(len(self.products) / self.items, 4) if self.items else 1.0


@dataclass
class FeedTally:
    """What a feed's shards add up to, without keeping their rows: the shards are admitted one by one.

    A sku an earlier shard has is refused (quarantined as a duplicate); product groups
    and categories are published once. The counts give the feed's quality score.
    """

    skus: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    categories: set[str] = field(default_factory=set)
    accepted: int = 0
    rejected: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)
    unresolved_brands: dict[str, int] = field(default_factory=dict)

    @property
    def items(self) -> int:
        """Items seen: accepted plus quarantined."""
        return self.accepted + self.rejected

    @property
    def quality_score(self) -> float:
        """Accepted items / all items (1.0 for an empty feed)."""
        return round(self.accepted / self.items, 4) if self.items else 1.0

    def admit(self, shard: Feed) -> Feed:
        """The rows of a shard (parsed on its own) that the feed publishes."""
        admitted = Feed(quarantine=list(shard.quarantine))
        for product in shard.products:
            if product["sku"] in self.skus:
                admitted.quarantine.append(
                    {
                        "ingestor": product["ingestor"],
                        "stage": "feed",
                        "item": str(product["sku"])[:200],
                        "reason": f"sku: expected a unique sku, found {product['sku']!r} again",
                        "document": json.dumps(product, ensure_ascii=False, default=str)[:10_000],
                    }
                )
                continue
            self.skus.add(product["sku"])
            admitted.products.append(product)
        accepted = {p["sku"] for p in admitted.products}
        admitted.offers = [o for o in shard.offers if o["sku"] in accepted]
        used = {p["group_id"] for p in admitted.products if p["group_id"]} - self.groups
        admitted.product_groups = [g for g in shard.product_groups if g["group_id"] in used]
        self.groups |= used
        admitted.categories = [c for c in shard.categories if c["name"] not in self.categories]
        self.categories |= {c["name"] for c in admitted.categories}
        self.accepted += len(admitted.products)
        self.rejected += len(admitted.quarantine)
        self.examples.extend(admitted.quarantine[: max(0, 3 - len(self.examples))])
        for brand, count in shard.unresolved_brands.items():
            self.unresolved_brands[brand] = self.unresolved_brands.get(brand, 0) + count
        return admitted


def _identifier(node: Node) -> str | None:
    return node.get("@id") or text(first(node, "url")) or text(first(node, "name"))


def _categories(node: Node, ids: dict[str, Node]) -> list[str]:
    found = []
    for prop in ("cmp:category", "category"):
        for value in values(node, prop, ids):
            name = name_of(value)
            if name:
                found.append(term(name))
    return found


def parse_registry(document: Any, ingestor: str) -> Registry:
    """Organizations, their brands and categories (``cmp:category``, ``category``) of a registry document."""
    all_nodes = nodes(document)
    ids = index(all_nodes)
    registry = Registry()
    seen_categories: set[str] = set()
    for org in walk(all_nodes, {"Organization", "Corporation", "OnlineStore", "Brand"}):
        org_types = types(org)
        brands = [org] if "Brand" in org_types else [b for b in values(org, "brand", ids) if isinstance(b, dict)]
        org_id = _identifier(org) or ""
        if "Brand" not in org_types:
            registry.organizations.append(
                {
                    "ingestor": ingestor,
                    "stage": "registry",
                    "org_id": org_id,
                    "name": text(first(org, "name")) or org_id,
                    "url": text(first(org, "url")),
                    "description": text(first(org, "description")),
                }
            )
        for brand in brands:
            name = text(first(brand, "name"))
            if not name:
                continue
            categories = _categories(brand, ids) or _categories(org, ids)
            registry.brands.append(
                {
                    "ingestor": ingestor,
                    "stage": "registry",
                    "brand_id": _identifier(brand) or name,
                    "name": name,
                    "url": text(first(brand, "url")),
                    "logo": text(first(brand, "logo")) if not isinstance(first(brand, "logo"), dict) else None,
                    "org_id": org_id,
                    "category": categories[0] if categories else None,
                }
            )
            for category in categories:
                if category not in seen_categories:
                    seen_categories.add(category)
                    registry.categories.append({"ingestor": ingestor, "stage": "registry", "name": category})
    return registry


def gtin_of(node: Node) -> str | None:
    """The item's GTIN (any of ``gtin``/``gtin8``…``gtin14``) as 14 digits; InvalidItem on a bad check digit."""
    for prop in GTIN_PROPERTIES:
        raw = first(node, prop)
        if raw in (None, ""):
            continue
        digits = "".join(ch for ch in str(raw) if not ch.isspace() and ch != "-")
        if not (digits.isdigit() and len(digits) in (8, 12, 13, 14) and ean.is_valid(digits)):
            raise InvalidItem(f"{prop}: expected a GTIN-8/12/13/14 with a valid check digit, found {raw!r}")
        return digits.zfill(14)
    return None


def _url(prop: str, value: Any) -> str | None:
    if value in (None, ""):
        return None
    url = text(value) if not isinstance(value, dict) else text(value.get("url") or value.get("contentUrl"))
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidItem(f"{prop}: expected an absolute http(s) URL, found {str(value)[:120]!r}")
    return url


def _price(prop: str, value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        number = float(str(value).replace(",", "")) if not isinstance(value, bool) else float("nan")
    except ValueError:
        number = float("nan")
    if not number >= 0:
        raise InvalidItem(f"{prop}: expected a non-negative number, found {value!r}")
    return number


def _enumerated(prop: str, value: Any, allowed: frozenset[str]) -> str | None:
    if value in (None, ""):
        return None
    short = term(str(value.get("@id", "")) if isinstance(value, dict) else str(value))
    if short not in allowed:
        raise InvalidItem(f"{prop}: expected a schema.org {prop} such as {sorted(allowed)[0]}, found {value!r}")
    return short


def offer_rows(product: Node, sku: str, ingestor: str, ids: dict[str, Node]) -> list[dict[str, Any]]:
    """The product's offers (``Offer`` or ``AggregateOffer``), checked."""
    rows = []
    for position, offer in enumerate(values(product, "offers", ids)):
        if not isinstance(offer, dict):
            raise InvalidItem(f"offers: expected an Offer node, found {str(offer)[:120]!r}")
        currency = text(first(offer, "priceCurrency"))
        if currency is not None and pycountry.currencies.get(alpha_3=currency) is None:
            raise InvalidItem(f"priceCurrency: expected an ISO 4217 code, found {currency!r}")
        rows.append(
            {
                "ingestor": ingestor,
                "stage": "feed",
                "sku": sku,
                "offer_index": position,
                "offer_type": next(iter(types(offer) or {"Offer"})),
                "price": _price("price", first(offer, "price")),
                "low_price": _price("lowPrice", first(offer, "lowPrice")),
                "high_price": _price("highPrice", first(offer, "highPrice")),
                "price_currency": currency,
                "offer_count": int(_price("offerCount", first(offer, "offerCount")) or 0) or None,
                "availability": _enumerated("availability", first(offer, "availability"), AVAILABILITY),
                "item_condition": _enumerated("itemCondition", first(offer, "itemCondition"), CONDITIONS),
                "url": _url("url", first(offer, "url")),
            }
        )
    return rows


def _items(all_nodes: list[Node], ids: dict[str, Node]) -> Iterable[tuple[Node, Node | None]]:
    """(item, its group or None) for every product and every variant of every group.

    A product that a group lists as a variant (by ``@id``) is an item of that group only.
    """
    found = list(walk(all_nodes, PRODUCT_TYPES))
    variants = {
        v["@id"]
        for node in found
        if "ProductGroup" in types(node)
        for v in values(node, "hasVariant")
        if isinstance(v, dict) and isinstance(v.get("@id"), str)
    }
    for node in found:
        if "ProductGroup" in types(node):
            for variant in values(node, "hasVariant", ids):
                yield (variant if isinstance(variant, dict) else {"@value": variant}), node
        elif node.get("@id") not in variants:
            yield node, None


def parse_feed(document: Any, ingestor: str, registry: Registry, feed: Feed | None = None) -> Feed:
    """Accepted and quarantined items of one feed document (or shard), added to ``feed``."""
    feed = feed or Feed()
    all_nodes = nodes(document)
    ids = index(all_nodes)
    skus = {row["sku"] for row in feed.products}
    categories = {row["name"] for row in feed.categories}
    groups = {row["group_id"] for row in feed.product_groups}
    for item, group in _items(all_nodes, ids):
        reference = str(item.get("sku") or item.get("name") or item.get("@id") or "?")
        try:
            product, offers = _product(item, group, ingestor, registry, ids, feed)
            if product["sku"] in skus:
                raise InvalidItem(f"sku: expected a unique sku, found {product['sku']!r} again")
        except InvalidItem as error:
            feed.quarantine.append(
                {
                    "ingestor": ingestor,
                    "stage": "feed",
                    "item": reference[:200],
                    "reason": str(error),
                    "document": json.dumps(item, ensure_ascii=False, default=str)[:10_000],
                }
            )
            continue
        skus.add(product["sku"])
        feed.products.append(product)
        feed.offers.extend(offers)
        if product["category"] and product["category"] not in categories:
            categories.add(product["category"])
            feed.categories.append({"ingestor": ingestor, "stage": "feed", "name": product["category"]})
        if group is not None and product["group_id"] not in groups:
            groups.add(product["group_id"])
            feed.product_groups.append(_group_row(group, ingestor, registry, ids))
    return feed


def _group_id(group: Node) -> str:
    return str(text(first(group, "productGroupID")) or _identifier(group) or "")


def _group_row(group: Node, ingestor: str, registry: Registry, ids: dict[str, Node]) -> dict[str, Any]:
    brand = first(group, "brand", ids)
    categories = _categories(group, ids)
    return {
        "ingestor": ingestor,
        "stage": "feed",
        "group_id": _group_id(group),
        "name": text(first(group, "name")) or _group_id(group),
        "description": text(first(group, "description")),
        "brand_name": name_of(brand),
        "brand_id": registry.resolve(brand) if brand else None,
        "varies_by": ",".join(term(str(v)) for v in values(group, "variesBy")),
        "category": categories[0] if categories else None,
    }


def _product(
    item: Node, group: Node | None, ingestor: str, registry: Registry, ids: dict[str, Node], feed: Feed
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if not types(item):
        raise InvalidItem("@type: expected a Product, found none")
    name = text(first(item, "name"))
    if not name:
        raise InvalidItem("name: expected a product name, found none")
    sku = text(first(item, "sku")) or text(first(item, "productID")) or item.get("@id")
    if not sku:
        raise InvalidItem("sku: expected a sku (or productID or @id) to key the product, found none")
    inherited = group or {}
    brand = first(item, "brand", ids) or first(inherited, "brand", ids)
    brand_id = registry.resolve(brand) if brand else None
    brand_name = name_of(brand)
    if brand_name and brand_id is None:
        feed.unresolved_brands[brand_name] = feed.unresolved_brands.get(brand_name, 0) + 1
    categories = _categories(item, ids) or _categories(inherited, ids)
    product = {
        "ingestor": ingestor,
        "stage": "feed",
        "sku": str(sku),
        "name": name,
        "description": text(first(item, "description")) or text(first(inherited, "description")),
        "brand_name": brand_name,
        "brand_id": brand_id,
        "gtin": gtin_of(item),
        "group_id": _group_id(group) if group is not None else None,
        "category": categories[0] if categories else None,
        "url": _url("url", first(item, "url")),
        "image": _url("image", first(item, "image") or first(inherited, "image")),
    }
    return product, offer_rows(item, str(sku), ingestor, ids)
