"""A deterministic catalog for tests, the demo and the benchmark: a JSON-LD registry and a sharded feed.

``write_catalog(folder, products=1000, shard_size=500, seed=7)`` writes ``registry.jsonld``
(an Organization with brands, each with a ``cmp:category``), ``feed.jsonld`` (a
``DataFeed`` of ``DataDownload`` shards) and ``feed-<n>.jsonld`` shards (``ItemList``s of
Products and ProductGroups with variants, offers with valid GTIN-13s, prices, currencies,
availability), and returns the paths. The same arguments always give the same bytes.
Product texts combine varied nouns, materials and uses, so search has something to find.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stdnum import ean

CATEGORIES = ("Kitchen", "Garden", "Office", "Outdoor", "Bakery", "Baby care", "Coffee", "Stationery")
NOUNS = {
    "Kitchen": ("frying pan", "chef's knife", "cutting board", "saucepan", "kettle"),
    "Garden": ("watering can", "pruning shears", "garden hose", "seed tray", "trowel"),
    "Office": ("desk lamp", "monitor stand", "filing cabinet", "office chair", "stapler"),
    "Outdoor": ("camping tent", "sleeping bag", "hiking backpack", "headlamp", "water bottle"),
    "Bakery": ("sourdough loaf", "rye bread", "croissant", "baguette", "muffin"),
    "Baby care": ("infant formula", "baby wipes", "teething ring", "baby bottle", "nappy cream"),
    "Coffee": ("arabica beans", "espresso roast", "pour-over kettle", "coffee grinder", "french press"),
    "Stationery": ("spiral notebook", "fountain pen", "sketch pad", "sticky notes", "ring binder"),
}
MATERIALS = ("stainless steel", "bamboo", "recycled plastic", "cast iron", "organic cotton", "glass", "oak")
USES = ("for everyday use", "for professionals", "for small spaces", "for travel", "for gifts", "for beginners")
CURRENCIES = ("EUR", "USD", "XOF", "GBP")
AVAILABILITY = ("https://schema.org/InStock", "https://schema.org/OutOfStock", "https://schema.org/PreOrder")


@dataclass(frozen=True)
class Catalog:
    """What ``write_catalog`` wrote."""

    registry: Path
    feed: Path
    shards: tuple[Path, ...]
    products: int


def gtin13(number: int) -> str:
    """A valid GTIN-13 (EAN-13) from a number: twelve digits plus their check digit."""
    body = f"{number % 10**12:012d}"
    return body + ean.calc_check_digit(body)


def _brands(rng: random.Random, count: int) -> list[dict[str, Any]]:
    syllables = ("ka", "lo", "mi", "ra", "te", "vo", "nu", "si", "be", "da")
    brands = []
    for i in range(count):
        name = "".join(rng.choice(syllables) for _ in range(3)).capitalize() + f" {i}"
        brands.append(
            {
                "@type": "Brand",
                "@id": f"https://brands.example/{i}",
                "name": name,
                "url": f"https://brands.example/{i}",
                "cmp:category": CATEGORIES[i % len(CATEGORIES)],
            }
        )
    return brands


def _product(rng: random.Random, index: int, brand: dict[str, Any]) -> dict[str, Any]:
    category = brand["cmp:category"]
    noun, material, use = rng.choice(NOUNS[category]), rng.choice(MATERIALS), rng.choice(USES)
    return {
        "@type": "Product",
        "sku": f"SKU-{index:07d}",
        "name": f"{material.title()} {noun} {index}",
        "description": f"A {material} {noun} {use}. <b>{category}</b> range by {brand['name']}.",
        "brand": {"@id": brand["@id"]},
        "category": category,
        "gtin13": gtin13(4_000_000_000_00 + index),
        "url": f"https://shop.example/p/{index}",
        "offers": {
            "@type": "Offer",
            "price": round(rng.uniform(1, 500), 2),
            "priceCurrency": rng.choice(CURRENCIES),
            "availability": rng.choice(AVAILABILITY),
            "itemCondition": "https://schema.org/NewCondition",
        },
    }


def items(products: int, brands: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Products, every fifth position a ProductGroup of three variants (each a product)."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    index = 0
    while index < products:
        brand = brands[rng.randrange(len(brands))]
        if index % 5 == 0 and index + 3 <= products:
            variants = [_product(rng, index + k, brand) for k in range(3)]
            out.append(
                {
                    "@type": "ProductGroup",
                    "productGroupID": f"G-{index:07d}",
                    "name": f"{variants[0]['name'].rsplit(' ', 1)[0]} family",
                    "brand": {"@id": brand["@id"]},
                    "variesBy": ["https://schema.org/size"],
                    "hasVariant": variants,
                }
            )
            index += 3
        else:
            out.append(_product(rng, index, brand))
            index += 1
    return out


def write_catalog(folder: Path, products: int = 1000, shard_size: int = 500, seed: int = 7) -> Catalog:
    """Write the registry, the feed index and its shards into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    brands = _brands(rng, 12)
    registry = folder / "registry.jsonld"
    registry.write_text(
        json.dumps(
            {
                "@context": ["https://schema.org", {"cmp": "https://cmp.example/ns#"}],
                "@type": "Organization",
                "@id": "https://org.example/",
                "name": "Generated Goods Ltd",
                "url": "https://org.example/",
                "brand": brands,
            },
            ensure_ascii=False,
        )
    )
    all_items = items(products, brands, seed)
    shards = []
    for number, start in enumerate(range(0, len(all_items), shard_size)):
        shard = folder / f"feed-{number:04d}.jsonld"
        document = {
            "@context": "https://schema.org",
            "@type": "ItemList",
            "itemListElement": all_items[start : start + shard_size],
        }
        shard.write_text(json.dumps(document, ensure_ascii=False))
        shards.append(shard)
    feed = folder / "feed.jsonld"
    feed.write_text(
        json.dumps(
            {
                "@context": "https://schema.org",
                "@type": "DataFeed",
                "dataFeedElement": [{"@type": "DataDownload", "contentUrl": s.name} for s in shards],
            }
        )
    )
    return Catalog(registry=registry, feed=feed, shards=tuple(shards), products=products)
