"""The SOT daily exports (see docs/contracts/sot-export.md)."""
