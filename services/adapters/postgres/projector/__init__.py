"""Keeping projections from the log: runner, rebuild, check, failures."""
