"""Executing projections' writes, and what the projector shares with other writers."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from turnlog.contracts.events import ALL_PAYLOADS
from turnlog.domain.values import clean
from turnlog.projections.base import Copy, Event, Projection, Write
from turnlog.services.app.log.codec import EventCodec
from turnlog.services.app.log.records import RecordedEvent

Conn = asyncpg.Connection | PoolConnectionProxy
LOCK_CLASS = 0x746C70  # advisory lock namespace of projections

_codec = EventCodec(ALL_PAYLOADS)


def lock_key(projection: str) -> int:
    """The advisory lock every writer of ``projection``'s tables holds (shared) for its
    transaction, and a rebuild holds (exclusive) while it swaps the tables in."""
    return int.from_bytes(hashlib.sha256(projection.encode()).digest()[:4], "big", signed=True)


async def hold(conn: Conn, projection: str, *, exclusive: bool = False) -> None:
    fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    await conn.execute(f"SELECT {fn}($1, $2)", LOCK_CLASS, lock_key(projection))


def decode(records: Iterable[RecordedEvent]) -> list[Event]:
    """Records as projections see them (a type this version does not know: no payload).

    Events recorded before the text policy existed may hold U+0000, which no
    PostgreSQL text or jsonb can take: projections see U+FFFD in its place, so such an
    event is projected rather than stopping its projection (the log keeps its bytes)."""
    out = []
    for r in records:
        known = _codec.knows(r.type)
        payload = storable_payload(r.payload) if known else b""
        out.append(
            Event(
                position=r.position,
                stream_id=clean(r.stream_id),
                version=r.version,
                type=r.type,
                recorded_at=r.recorded_at,
                correlation_id=_clean(r.correlation_id),
                causation_id=_clean(r.causation_id),
                actor=_clean(r.actor),
                payload=_codec.decode(r.type, r.schema_version, payload) if known else None,
            )
        )
    return out


def unread(r: RecordedEvent) -> Event:
    """``r`` as an event whose payload could not be read: its place and type only."""
    return Event(
        position=r.position,
        stream_id=clean(r.stream_id),
        version=r.version,
        type=clean(r.type),
        recorded_at=r.recorded_at,
        correlation_id=_clean(r.correlation_id),
        causation_id=_clean(r.causation_id),
        actor=_clean(r.actor),
        payload=None,
    )


_NUL_ESCAPE = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def storable_payload(payload: bytes) -> bytes:
    """``payload`` (JSON) with every escaped U+0000 in its strings made U+FFFD."""
    if b"\\u0000" not in payload:
        return payload
    return _NUL_ESCAPE.sub(rb"\1\\ufffd", payload)


def _clean(text: str | None) -> str | None:
    return None if text is None else clean(text)


def quote(schema: str) -> str:
    return '"' + schema.replace('"', '""') + '"'


async def execute(conn: Conn, writes: Sequence[Write], schema: str) -> None:
    """Run ``writes`` in order on ``conn`` against the tables in ``schema``."""
    qualified = quote(schema)
    for w in writes:
        if isinstance(w, Copy):
            await conn.copy_records_to_table(
                w.table, records=w.rows, columns=list(w.columns), schema_name=schema
            )
        else:
            await conn.executemany(w.sql.replace("{s}", qualified), w.rows)


async def create_tables(conn: Conn, projection: Projection, schema: str) -> None:
    qualified = quote(schema)
    for statement in projection.ddl:
        await conn.execute(statement.replace("{s}", qualified))


async def ensure(pool: asyncpg.Pool, projections: Iterable[Projection]) -> str:
    """Create missing projection tables (and positions at 0) in the live schema; returns
    that schema's name."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", LOCK_CLASS)
        schema: str = await conn.fetchval("SELECT current_schema()")
        for p in projections:
            exists = await conn.fetchval(
                "SELECT to_regclass($1) IS NOT NULL", f"{quote(schema)}.{p.tables[0]}"
            )
            if not exists:
                await create_tables(conn, p, schema)
            await conn.execute(
                "INSERT INTO turnlog_projection_positions (name, position) VALUES ($1, 0)"
                " ON CONFLICT (name) DO NOTHING",
                p.name,
            )
    return schema
