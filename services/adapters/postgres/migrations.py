"""Versioned schema migrations, applied in order on start; safe to run concurrently."""

from __future__ import annotations

from importlib import resources

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# A fixed advisory-lock key, so two processes starting at once migrate one after the other.
_LOCK_KEY = 0x7475726E6C6F67  # "turnlog"

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, "001_event_log.sql"),
    (2, "002_append_batch.sql"),
    (3, "003_bus.sql"),
    (4, "004_projections.sql"),
    (5, "005_user_keys.sql"),
    (6, "006_correlated_writes.sql"),
    (7, "007_append_rows.sql"),
    (8, "008_state_snapshots.sql"),
    (9, "009_drop_append_batch.sql"),
    (10, "010_failures_and_processes.sql"),
    (11, "011_process_runtimes.sql"),
)


async def migrate(conn: asyncpg.Connection | PoolConnectionProxy) -> list[int]:
    """Apply every migration not applied yet; return the versions applied now."""
    applied_now: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS turnlog_schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            r["version"] for r in await conn.fetch("SELECT version FROM turnlog_schema_migrations")
        }
        for version, name in MIGRATIONS:
            if version in done:
                continue
            sql = resources.files("turnlog.services.adapters.postgres").joinpath(name).read_text()
            await conn.execute(sql)
            await conn.execute(
                "INSERT INTO turnlog_schema_migrations (version, name) VALUES ($1, $2)",
                version,
                name,
            )
            applied_now.append(version)
    return applied_now
