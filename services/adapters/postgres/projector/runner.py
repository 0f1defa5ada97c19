"""Keeping projections up to date: one follower of the log feeds every projection.

Each batch is applied to every projection in one transaction (``together``) that also
moves their positions, after checking them under row locks: events are applied exactly
once even with several projector processes, or a rebuild swapping tables in. A batch one
of them cannot apply is applied to each in a transaction of its own instead.

No event stops the projector: a projection that cannot apply one stops at the event
before it, alone, with its failure recorded (``failures``); the others go on. A failure
of the database itself (a restart) is not an event's fault: it ends ``run`` for the
supervisor to start it again once the database is back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog

from turnlog.projections.base import Event, Projection
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.follow import GlobalReader, follow
from turnlog.services.adapters.postgres.projector import failures, together
from turnlog.services.adapters.postgres.projector.failures import Failure
from turnlog.services.adapters.postgres.projector.reading import Batch, read, writes_for
from turnlog.services.adapters.postgres.projector.writes import ensure, execute, hold
from turnlog.services.app.log.errors import transient
from turnlog.services.app.log.records import RecordedEvent

log = structlog.get_logger("turnlog.projector")

_POSITION = "SELECT position FROM turnlog_projection_positions WHERE name = $1 FOR UPDATE"
# Seconds the live projector waits after a wake-up before it reads: the appends of a turn
# (and of other sessions meanwhile) are projected in one transaction, not one each.
LINGER = 0.005
_MOVE = "UPDATE turnlog_projection_positions SET position = $2, updated_at = now() WHERE name = $1"


class Projector:
    """Follows the log and applies it to ``projections``, catch-up first, then live."""

    def __init__(
        self,
        store: EventStore,
        projections: Sequence[Projection],
        *,
        batch_size: int = 2000,
        retry_poll: float = 2.0,
        linger: float = LINGER,
    ) -> None:
        self.store = store
        self.keyring = store.keyring
        self.projections = list(projections)
        self.batch_size = batch_size
        self.retry_poll = retry_poll
        self.linger = linger
        self.positions: dict[str, int] = {}
        self.failed: dict[str, Failure] = {}
        self.schema = ""
        # Seconds from an event's recorded_at to its projection's commit, recent batches.
        self.lags: deque[float] = deque(maxlen=10_000)
        self.ready = asyncio.Event()
        self._progressed = asyncio.Event()
        self._recorded: dict[str, Failure] = {}  # failures on record, until passed
        self._reader: GlobalReader | None = None
        self._cursor = 0  # the last position read

    async def run(self) -> None:
        self.schema = await ensure(self.store.pool, self.projections)
        self.positions = await self._stored()
        self._recorded = await failures.load(self.store.pool, self.positions)
        self.failed = {}  # every start tries again what failed before
        self._cursor = min(self.positions.values())
        self._reader = reader = GlobalReader(self.store, self._cursor, self.batch_size)
        log.info("projector started", position=reader.position, schema=self.schema)
        self.ready.set()
        watching = asyncio.create_task(self._watch_retries())
        try:
            async with contextlib.aclosing(follow(reader, linger=self.linger)) as batches:
                async for records in batches:
                    await self._step(reader, records)
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)

    async def _step(self, reader: GlobalReader, records: list[RecordedEvent]) -> None:
        after, self._cursor = reader.batch_after, records[-1].position
        batch = await read(self.store.pool, self.keyring, records)
        active = [p for p in self.projections if p.name not in self.failed]
        results = await self._apply_together(active, batch, after)
        if results is None:
            results = await asyncio.gather(*(self._apply(p, batch, after) for p in active))
        if batch.poison is not None:
            await self._poisoned(active, batch.poison)
        now = datetime.now(UTC)  # the batch's oldest event waited longest
        self.lags.append((now - records[0].recorded_at).total_seconds())
        self._progressed.set()
        behind = min(
            (self.positions[p.name] for p in active if p.name not in self.failed),
            default=self._cursor,
        )
        if min(results, default=self._cursor) < after or behind < self._cursor:
            # a projection's position went back (a rebuild), or a poison cut the batch
            reader.seek(behind)
            self._cursor = behind

    async def _apply_together(
        self, active: list[Projection], batch: Batch, after: int
    ) -> list[int] | None:
        """Apply ``batch`` to ``active`` in one transaction; their positions after, or
        None if one of them cannot apply it (nothing applied: each on its own finds which)."""
        parts = []
        for p in active:
            at = self.positions.get(p.name, 0)
            events = [e for e in batch.events if e.position > at]
            if events:
                parts.append(together.Part(p, events, max(after, at)))
        if parts:
            try:
                reached = await together.commit(self.store.pool, parts, batch, self.schema)
            except Exception as e:
                if transient(e):
                    raise
                return None
            self.positions.update(reached)
            for name, position in reached.items():
                await self._passed(name, position)
        return [self.positions.get(p.name, 0) for p in active]

    async def _apply(self, projection: Projection, batch: Batch, after: int) -> int:
        """Apply what ``projection`` has not seen of ``batch`` (which follows ``after``);
        its position after. An event it cannot apply fails it there, alone."""
        events = [e for e in batch.events if e.position > self.positions.get(projection.name, 0)]
        if not events:
            return self.positions.get(projection.name, 0)
        after = max(after, self.positions.get(projection.name, 0))
        while True:
            try:
                return await self._commit(projection, events, batch, after)
            except Exception as e:
                if transient(e):
                    raise
                if len(events) == 1:
                    await self._fail(projection, events[0], e)
                    return self.positions[projection.name]
            half = events[: len(events) // 2]  # find the event: bisect, committing what holds
            try:
                reached = await self._commit(projection, half, batch, after)
            except Exception as e:
                if transient(e):
                    raise
                events = half
                continue
            if reached < half[-1].position:
                return reached  # another writer moved the position: follow it from there
            after, events = reached, events[len(half) :]

    async def _commit(
        self, projection: Projection, events: list[Event], batch: Batch, after: int
    ) -> int:
        """Apply ``events`` (which follow ``after``) in one transaction with the new
        position; the position after, or the stored one if another writer moved it."""
        last = events[-1].position
        name = projection.name
        async with self.store.pool.acquire() as conn, conn.transaction():
            await hold(conn, name)
            stored: int = await conn.fetchval(_POSITION, name)
            if stored < after or stored >= last:
                self.positions[name] = stored
                return stored
            todo = [e for e in events if e.position > stored]
            await execute(conn, writes_for(projection, todo, batch), self.schema)
            await conn.execute(_MOVE, name, last)
        self.positions[name] = last
        await self._passed(name, last)
        return last

    async def _passed(self, name: str, position: int) -> None:
        """Clear the failure on record of ``name`` once it is past the event it failed at."""
        recorded = self._recorded.get(name)
        if recorded is not None and position >= recorded.position:
            await failures.passed(self.store.pool, name, position)
            self._recorded.pop(name, None)
            log.info("projection passed the event it had failed at", projection=name)

    async def _poisoned(self, active: list[Projection], poison: tuple[Event, Exception]) -> None:
        """An event nobody can read fails every projection that reached it."""
        event, error = poison
        for projection in active:
            if self.positions.get(projection.name, 0) < event.position:
                await self._fail(projection, event, error)

    async def _fail(self, projection: Projection, event: Event, error: BaseException) -> None:
        failure = await failures.record(self.store.pool, projection.name, event, error)
        self.failed[projection.name] = self._recorded[projection.name] = failure
        log.error(
            "projection stopped at an event it cannot apply; the others go on",
            projection=projection.name,
            position=event.position,
            stream_id=event.stream_id,
            version=event.version,
            event_type=event.type,
            error=failure.error,
            retry=f"turnlog projections retry {projection.name}",
        )

    async def _watch_retries(self) -> None:
        """Notice a retry asked for (its failure removed, by ``turnlog projections
        retry``) and follow the log again from where that projection stopped."""
        while True:
            await asyncio.sleep(self.retry_poll)
            if not self.failed:
                continue
            try:
                still = await failures.load(self.store.pool, self.failed)
            except Exception as e:
                if not transient(e):
                    raise
                continue
            for name in [n for n in self.failed if n not in still]:
                del self.failed[name]
                self._recorded.pop(name, None)
                log.info("retrying projection", projection=name, position=self.positions[name])
                assert self._reader is not None
                self._reader.rewind(self.positions[name])
                self.store.announce()

    async def _stored(self) -> dict[str, int]:
        rows = await self.store.pool.fetch(
            "SELECT name, position FROM turnlog_projection_positions WHERE name = ANY($1)",
            [p.name for p in self.projections],
        )
        return {r[0]: r[1] for r in rows}

    async def caught_up(self, timeout: float = 30.0) -> None:
        """Wait until every projection that has not failed has reached the log's last
        position (for tests and tools that read their own writes through projections)."""
        target = await self.store.last_position()
        async with asyncio.timeout(timeout):
            await self.ready.wait()
            while min(self._healthy_positions(), default=target) < target:
                self._progressed.clear()
                await self._progressed.wait()

    def _healthy_positions(self) -> list[int]:
        return [p for name, p in self.positions.items() if name not in self.failed]
