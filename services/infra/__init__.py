"""Embedded PostgreSQL and NATS servers that turnlog runs for itself."""
