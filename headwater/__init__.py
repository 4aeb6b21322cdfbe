"""Headwater: scheduled, verified ingestion of external datasets into ClickHouse."""
