"""Keeping projections up to date: one follower of the log feeds every projection.

Each batch is applied to each projection in a transaction of its own that also moves the
projection's position, after checking that position under a row lock: events are applied
exactly once even with several projector processes, or a rebuild swapping tables in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog

from turnlog.projections.base import Projection
from turnlog.services.projector.reading import Batch, read, writes_for
from turnlog.services.projector.writes import ensure, execute, hold
from turnlog.services.sealing import KeyRing
from turnlog.services.store.eventstore import EventStore
from turnlog.services.store.follow import GlobalReader, follow

log = structlog.get_logger("turnlog.projector")

_POSITION = "SELECT position FROM turnlog_projection_positions WHERE name = $1 FOR UPDATE"
_MOVE = "UPDATE turnlog_projection_positions SET position = $2, updated_at = now() WHERE name = $1"


class Projector:
    """Follows the log and applies it to ``projections``, catch-up first, then live."""

    def __init__(
        self, store: EventStore, projections: Sequence[Projection], *, batch_size: int = 2000
    ) -> None:
        self.store = store
        self.keyring = KeyRing(store)
        self.projections = list(projections)
        self.batch_size = batch_size
        self.positions: dict[str, int] = {}
        self.schema = ""
        # Seconds from an event's recorded_at to its projection's commit, recent batches.
        self.lags: deque[float] = deque(maxlen=10_000)
        self.ready = asyncio.Event()
        self._progressed = asyncio.Event()

    async def run(self) -> None:
        self.schema = await ensure(self.store.pool, self.projections)
        self.positions = await self._stored()
        reader = GlobalReader(self.store, min(self.positions.values()), self.batch_size)
        log.info("projector started", position=reader.position, schema=self.schema)
        self.ready.set()
        async with contextlib.aclosing(follow(reader)) as batches:
            async for records in batches:
                batch = await read(self.keyring, records)
                results = await asyncio.gather(*(self._apply(p, batch) for p in self.projections))
                # the batch's oldest event waited longest
                now = datetime.now(UTC)
                self.lags.append((now - records[0].recorded_at).total_seconds())
                self._progressed.set()
                behind = min(results)
                if behind < records[0].position - 1:
                    reader.seek(behind)  # a projection's position went back: follow it

    async def _apply(self, projection: Projection, batch: Batch) -> int:
        """Apply what ``projection`` has not seen of ``batch``; its position after."""
        events = batch.events
        last = events[-1].position
        if self.positions.get(projection.name, 0) >= last:
            return self.positions[projection.name]
        async with self.store.pool.acquire() as conn, conn.transaction():
            await hold(conn, projection.name)
            stored: int = await conn.fetchval(_POSITION, projection.name)
            if stored < events[0].position - 1 or stored >= last:
                self.positions[projection.name] = stored
                return stored
            todo = [e for e in events if e.position > stored]
            await execute(conn, writes_for(projection, todo, batch), self.schema)
            await conn.execute(_MOVE, projection.name, last)
        self.positions[projection.name] = last
        return last

    async def _stored(self) -> dict[str, int]:
        rows = await self.store.pool.fetch(
            "SELECT name, position FROM turnlog_projection_positions WHERE name = ANY($1)",
            [p.name for p in self.projections],
        )
        return {r[0]: r[1] for r in rows}

    async def caught_up(self, timeout: float = 30.0) -> None:
        """Wait until every projection has reached the log's last position (for tests and
        tools that need to read their own writes through projections)."""
        target = await self.store.last_position()
        async with asyncio.timeout(timeout):
            while min(self.positions.values(), default=0) < target:
                self._progressed.clear()
                await self._progressed.wait()
