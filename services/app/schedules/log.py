"""A schedule's stream on the event log, and the lease that shows its run is alive.

The worker running a schedule holds a claim (the lease: in PostgreSQL an advisory lock
on a connection of its own) from before it records ``schedule.fired`` until after it
records ``schedule.completed``. The claim goes with its holder when a process dies, so a
run on record as open whose lease is free was cut off.
"""

from __future__ import annotations

import hashlib

import structlog

from turnlog.contracts.events import SCHEDULE_PAYLOADS
from turnlog.domain.schedule import ScheduleRecord
from turnlog.services.app.log.codec import EventCodec
from turnlog.services.app.log.records import NewEvent
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.ports import Claim, Claims, Clock, EventLog, system_clock
from turnlog.services.app.spec import ScheduleSpec as Schedule

log = structlog.get_logger("turnlog.schedules")

LOCK_CLASS = 0x746C73  # advisory lock namespace of schedule runs

_codec = EventCodec(SCHEDULE_PAYLOADS)


class ScheduleLog:
    """One schedule's record: folded from its stream, appended at the version it was
    folded at (``ConcurrencyConflict`` when another worker recorded something first)."""

    def __init__(
        self, store: EventLog, schedule: Schedule, claims: Claims, clock: Clock = system_clock
    ) -> None:
        self.store, self.schedule, self.claims, self.clock = store, schedule, claims, clock
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
        at = self.clock()
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

    async def lease(self) -> Claim | None:
        """The schedule's lease, or None while another worker holds it."""
        return await self.claims.try_claim((LOCK_CLASS, self._key))
