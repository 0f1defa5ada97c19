"""The embedded PostgreSQL and NATS servers."""
