"""A schedule's stream on the event log, and the lease that shows its run is alive.

The worker running a schedule holds a claim (the lease: in PostgreSQL an advisory lock
on a connection of its own) from before it records ``schedule.fired`` until after it
records ``schedule.completed``. The claim goes with its holder when a process dies, so a
run on record as open whose lease is free was cut off.
"""

from __future__ import annotations

import hashlib

import structlog

from turnlog.domain.schedule import ScheduleRecord
from turnlog.services.app.aggregates import AggregateStore
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.ports import Claim, Claims, EventLog
from turnlog.services.app.spec import ScheduleSpec as Schedule

log = structlog.get_logger("turnlog.schedules")

LOCK_CLASS = 0x746C73  # advisory lock namespace of schedule runs


class ScheduleLog:
    """One schedule's record: loaded from its stream, appended at the version it was
    loaded at (``ConcurrencyConflict`` when another worker recorded something first)."""

    def __init__(self, store: EventLog, schedule: Schedule, claims: Claims) -> None:
        self.store, self.schedule, self.claims = store, schedule, claims
        self.aggregates = AggregateStore(store)
        digest = hashlib.sha256(schedule.stream_id.encode()).digest()
        self._key = int.from_bytes(digest[:4], "big", signed=True)

    async def load(self) -> ScheduleRecord:
        empty = ScheduleRecord.new(self.schedule.app_name, self.schedule.name)
        record = await self.aggregates.load(self.schedule.stream_id, empty.id, empty)
        assert record is not None
        return record

    async def save(self, record: ScheduleRecord, meta: Metadata) -> None:
        await self.aggregates.save(self.schedule.stream_id, record, meta)

    async def lease(self) -> Claim | None:
        """The schedule's lease, or None while another worker holds it."""
        return await self.claims.try_claim((LOCK_CLASS, self._key))
