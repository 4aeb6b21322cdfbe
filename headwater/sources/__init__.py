"""Source specs: what each source publishes. The pipeline itself is shared."""
