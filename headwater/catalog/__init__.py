"""Catalog feeds (the discovery node's ingestors): ``ingestion.yaml``, JSON-LD registries and product feeds."""
