"""A schedule's stream on the event store, and the lease that shows its run is alive.

The worker running a schedule holds a PostgreSQL advisory lock (the lease) on a
connection of its own from before it records ``schedule.fired`` until after it records
``schedule.completed``. PostgreSQL drops the lock with the connection when a process
dies, so a run on record as open whose lease is free was cut off.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from turnlog.contracts.events import SCHEDULE_PAYLOADS
from turnlog.domain.schedule import ScheduleRecord
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.app.log.codec import EventCodec
from turnlog.services.app.log.records import NewEvent
from turnlog.services.app.mapping import Metadata
from turnlog.services.sdk.schedules import Schedule

log = structlog.get_logger("turnlog.schedules")

LOCK_CLASS = 0x746C73  # advisory lock namespace of schedule runs

_codec = EventCodec(SCHEDULE_PAYLOADS)


class Lease:
    """The advisory lock of one schedule, held on a pool connection until released."""

    def __init__(self, pool: asyncpg.Pool, conn: PoolConnectionProxy, key: int) -> None:
        self._pool, self._conn, self._key = pool, conn, key

    async def release(self) -> None:
        try:
            await self._conn.execute("SELECT pg_advisory_unlock($1, $2)", LOCK_CLASS, self._key)
        except Exception as e:
            # the lock must not go back to the pool with the connection: close it
            log.warning("releasing a schedule lease failed; closing its connection", error=str(e))
            self._conn.terminate()
        finally:
            await self._pool.release(self._conn)


class ScheduleLog:
    """One schedule's record: folded from its stream, appended at the version it was
    folded at (``ConcurrencyConflict`` when another worker recorded something first)."""

    def __init__(self, store: EventStore, schedule: Schedule) -> None:
        self.store, self.schedule = store, schedule
        digest = hashlib.sha256(schedule.stream_id.encode()).digest()
        self._key = int.from_bytes(digest[:4], "big", signed=True)

    async def load(self) -> ScheduleRecord:
        records = await self.store.read_stream(self.schedule.stream_id)
        return ScheduleRecord.fold(
            self.schedule.app_name,
            self.schedule.name,
            (_codec.decode(r.type, r.schema_version, r.payload) for r in records),
        )

    async def save(self, record: ScheduleRecord, meta: Metadata) -> None:
        expected, pending = record.collect()
        at = datetime.now(UTC)
        events = [
            NewEvent(
                type=p.TYPE,
                schema_version=p.SCHEMA_VERSION,
                payload=_codec.encode(p),
                recorded_at=at,
                correlation_id=meta.correlation_id,
                causation_id=meta.causation_id,
                actor=meta.actor,
            )
            for p in pending
        ]
        await self.store.append(self.schedule.stream_id, expected, events)

    async def lease(self) -> Lease | None:
        """The schedule's lease, or None while another worker holds it."""
        pool = self.store.pool
        conn = await pool.acquire()
        try:
            got = await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", LOCK_CLASS, self._key)
        except BaseException:
            await pool.release(conn)
            raise
        if not got:
            await pool.release(conn)
            return None
        return Lease(pool, conn, self._key)
