"""Metrics in Prometheus's text format (prometheus-client)."""
