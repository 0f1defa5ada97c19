"""Scheduled runs: claiming ticks and running them."""
