"""A batch applied to every projection in one transaction: one commit, and a few round
trips, where a transaction per projection takes six of each.

The positions are checked and moved in that transaction, as each projection's own would
(so events are still applied exactly once, whoever else writes); the projections' locks
are taken in name order, as a rebuild takes them. If one projection cannot apply its
part, nothing is committed, and the projector applies the batch to each on its own,
which finds the one that fails and stops it alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from turnlog.projections.base import Event, Projection
from turnlog.services.adapters.postgres.projector.reading import Batch, writes_for
from turnlog.services.adapters.postgres.projector.writes import LOCK_CLASS, execute, lock_key

# unnest yields the keys in the order given, and each lock is taken as its row comes
_HOLD = "SELECT pg_advisory_xact_lock_shared($1, k) FROM unnest($2::int[]) AS k"
_POSITIONS = (
    "SELECT name, position FROM turnlog_projection_positions"
    " WHERE name = ANY($1::text[]) ORDER BY name FOR UPDATE"
)
_MOVE = (
    "UPDATE turnlog_projection_positions AS p SET position = m.position, updated_at = now()"
    " FROM unnest($1::text[], $2::bigint[]) AS m(name, position) WHERE p.name = m.name"
)


@dataclass(frozen=True)
class Part:
    """What ``projection`` has not seen of a batch: ``events``, which follow ``after``."""

    projection: Projection
    events: Sequence[Event]
    after: int


async def commit(
    pool: asyncpg.Pool, parts: Sequence[Part], batch: Batch, schema: str
) -> dict[str, int]:
    """Apply ``parts`` in one transaction; each projection's position after it: the
    batch's end, or the stored one where another writer moved it (then it applied none)."""
    parts = sorted(parts, key=lambda part: part.projection.name)
    names = [part.projection.name for part in parts]
    reached: dict[str, int] = {}
    moved: dict[str, int] = {}
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_HOLD, LOCK_CLASS, [lock_key(name) for name in names])
        stored = {row[0]: row[1] for row in await conn.fetch(_POSITIONS, names)}
        for part in parts:
            name, last = part.projection.name, part.events[-1].position
            at = stored[name]
            if at < part.after or at >= last:
                reached[name] = at
                continue
            todo = [e for e in part.events if e.position > at]
            await execute(conn, writes_for(part.projection, todo, batch), schema)
            reached[name] = moved[name] = last
        if moved:
            await conn.execute(_MOVE, list(moved), list(moved.values()))
    return reached
