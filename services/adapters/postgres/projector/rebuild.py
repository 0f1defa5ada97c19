"""Rebuilding projections from position 0 into fresh tables, then swapping them in.

The tables are built in a scratch schema per projection while everything keeps running.
The swap takes each projection's lock exclusively (its runner and, for collections, the
document writers hold it shared for each of their transactions), applies what was
appended meanwhile, moves the fresh tables into the live schema and sets the position,
all in one transaction: readers see the old tables or the new ones, never a mix.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from turnlog.projections.base import Projection
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.follow import GlobalReader
from turnlog.services.adapters.postgres.projector.reading import Batch, read, writes_for
from turnlog.services.adapters.postgres.projector.writes import (
    Conn,
    create_tables,
    execute,
    hold,
    quote,
)
from turnlog.services.app.log.records import RecordedEvent

Progress = Callable[[int, int], None]  # (position reached, last position when started)


def scratch_schema(projection: Projection, purpose: str = "rebuild") -> str:
    return f"turnlog_{purpose}_{projection.name}"


async def make_scratch(conn: Conn, projections: Sequence[Projection], purpose: str) -> None:
    """Empty tables for ``projections``, each in a scratch schema of its own."""
    for p in projections:
        scratch = quote(scratch_schema(p, purpose))
        await conn.execute(f"DROP SCHEMA IF EXISTS {scratch} CASCADE; CREATE SCHEMA {scratch}")
        await create_tables(conn, p, scratch_schema(p, purpose))


async def rebuild(
    store: EventStore,
    projections: Sequence[Projection],
    *,
    progress: Progress | None = None,
    batch_size: int = 5000,
) -> int:
    """Rebuild ``projections``; returns the position they were rebuilt up to."""
    pool = store.pool
    async with pool.acquire() as conn:
        live: str = await conn.fetchval("SELECT current_schema()")
        await make_scratch(conn, projections, "rebuild")
    target = await store.last_position()
    reader = GlobalReader(store, 0, batch_size)
    await build(reader, pool, projections, progress, target)
    async with pool.acquire() as conn, conn.transaction():
        for p in sorted(projections, key=lambda p: p.name):
            await hold(conn, p.name, exclusive=True)
        await _catch_up(reader, conn, projections, progress, target)
        for p in projections:
            await _swap(conn, p, live)
            await conn.execute(
                "INSERT INTO turnlog_projection_positions (name, position) VALUES ($1, $2)"
                " ON CONFLICT (name) DO UPDATE SET position = $2, updated_at = now()",
                p.name,
                reader.position,
            )
    return reader.position


async def build(
    reader: GlobalReader,
    pool: asyncpg.Pool,
    projections: Sequence[Projection],
    progress: Progress | None,
    target: int,
    *,
    purpose: str = "rebuild",
    until: int | None = None,
) -> None:
    """Apply the log from the reader's position into the scratch tables, up to its end
    (or to position ``until``), outside any lock: the next batch is read while this one
    is written, and each projection writes on a connection of its own, so PostgreSQL
    works on them side by side."""
    keyring = reader.store.keyring
    pending: asyncio.Task[list[RecordedEvent]] | None = None
    async with _connections(pool, len(projections)) as conns:
        try:
            pending = asyncio.create_task(reader.read())
            while True:
                records = await pending
                if not records:
                    if not reader.waiting_on_hole:
                        return
                    await asyncio.sleep(0.01)
                    pending = asyncio.create_task(reader.read())
                    continue
                done = until is not None and records[-1].position >= until
                if until is not None:
                    records = [r for r in records if r.position <= until]
                if not done:
                    pending = asyncio.create_task(reader.read())
                if records:
                    batch = await read(pool, keyring, records)
                    await asyncio.gather(
                        *(
                            _write(c, p, batch, scratch_schema(p, purpose))
                            for c, p in zip(conns, projections, strict=True)
                        )
                    )
                    if progress is not None:
                        progress(records[-1].position, max(target, records[-1].position))
                if done:
                    return
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)


@contextlib.asynccontextmanager
async def _connections(pool: asyncpg.Pool, n: int) -> AsyncIterator[list[PoolConnectionProxy]]:
    """``n`` connections of ``pool``, each taken given back, cancelled or not."""
    conns: list[PoolConnectionProxy] = []
    try:
        for _ in range(n):
            conns.append(await pool.acquire())
        yield conns
    finally:
        for conn in conns:
            await pool.release(conn)


async def _write(conn: Conn, projection: Projection, batch: Batch, schema: str) -> None:
    async with conn.transaction():
        await execute(conn, writes_for(projection, batch.events, batch), schema)


async def _catch_up(
    reader: GlobalReader,
    conn: Conn,
    projections: Sequence[Projection],
    progress: Progress | None,
    target: int,
) -> None:
    """Apply the log from the reader's position to its current end."""
    keyring = reader.store.keyring
    while True:
        records = await reader.read()
        if not records:
            if not reader.waiting_on_hole:
                return
            await asyncio.sleep(0.01)
            continue
        batch = await read(reader.store.pool, keyring, records)
        async with conn.transaction():
            for p in projections:
                await execute(conn, writes_for(p, batch.events, batch), scratch_schema(p))
        if progress is not None:
            progress(reader.position, max(target, reader.position))


async def _swap(conn: Conn, projection: Projection, live: str) -> None:
    scratch = scratch_schema(projection)
    for table in projection.tables:
        await _carry_indexes(conn, table, live, scratch)
        await conn.execute(f"DROP TABLE IF EXISTS {quote(live)}.{table}")
        await conn.execute(f"ALTER TABLE {quote(scratch)}.{table} SET SCHEMA {quote(live)}")
    await conn.execute(f"DROP SCHEMA {quote(scratch)}")


async def _carry_indexes(conn: Conn, table: str, live: str, scratch: str) -> None:
    """Indexes declared on the live table since it was made (an app's collection
    indexes), made again on the fresh one."""
    rows = await conn.fetch(
        "SELECT l.indexname, l.indexdef FROM pg_indexes l WHERE l.schemaname = $1"
        " AND l.tablename = $3 AND NOT EXISTS (SELECT 1 FROM pg_indexes s"
        " WHERE s.schemaname = $2 AND s.tablename = $3 AND s.indexname = l.indexname)",
        live,
        scratch,
        table,
    )
    for _, definition in rows:
        for prefix in (f" ON {live}.{table} ", f" ON {quote(live)}.{table} "):
            definition = definition.replace(prefix, f" ON {quote(scratch)}.{table} ", 1)
        await conn.execute(definition)
