"""Snapshots of a stream's state in turnlog_snapshots: one per stream, the newest kept."""

from __future__ import annotations

import asyncpg

from turnlog.services.app.log.records import Snapshot


async def save(pool: asyncpg.Pool, snapshot: Snapshot) -> None:
    """Keep ``snapshot`` unless the stream has one of a later version already."""
    await pool.execute(
        "INSERT INTO turnlog_snapshots (stream_id, version, type, schema_version, state, hash)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (stream_id) DO UPDATE SET"
        " version = excluded.version, type = excluded.type,"
        " schema_version = excluded.schema_version, state = excluded.state,"
        " hash = excluded.hash, taken_at = now()"
        " WHERE turnlog_snapshots.version < excluded.version",
        snapshot.stream_id,
        snapshot.version,
        snapshot.type,
        snapshot.schema_version,
        snapshot.state,
        snapshot.hash,
    )


async def load(pool: asyncpg.Pool, stream_id: str) -> Snapshot | None:
    row = await pool.fetchrow(
        "SELECT stream_id, version, type, schema_version, state, hash"
        " FROM turnlog_snapshots WHERE stream_id = $1",
        stream_id,
    )
    if row is None:
        return None
    return Snapshot(
        stream_id=row[0],
        version=row[1],
        type=row[2],
        schema_version=row[3],
        state=row[4],
        hash=row[5],
    )
