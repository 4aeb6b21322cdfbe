"""Development tools: the demo, data generators and the loopback export server (not used in production)."""
