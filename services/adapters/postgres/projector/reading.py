"""How projections read the log: unsealed and decoded, and, at each ``user.erased``
event, the earlier events of the streams that held that user's data, read again now that
the user's keys are gone, so the rows made from them can be brought in line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from turnlog.contracts.events import UserErased
from turnlog.projections.base import Erasing, Event, Projection, Write
from turnlog.services.adapters.postgres.projector.writes import decode, unread
from turnlog.services.adapters.postgres.rows import COLUMNS, to_record
from turnlog.services.app.log.errors import transient
from turnlog.services.app.log.records import RecordedEvent
from turnlog.services.app.sealed import needle
from turnlog.services.app.sealing import KeyRing

# Every event before the erasure of a stream that holds one sealed for that user. A
# scan of the log: erasures are rare, and this keeps writes free of any bookkeeping.
_ERASED_STREAMS = (
    f"SELECT {COLUMNS} FROM turnlog_events WHERE position < $2 AND stream_id IN ("
    " SELECT DISTINCT stream_id FROM turnlog_events"
    " WHERE position < $2 AND position($1::bytea IN payload) > 0)"
    " ORDER BY position"
)


@dataclass
class Batch:
    """Events for projections; ``erasures``: at the position of each ``user.erased``
    event, the events its projections' rows must be brought in line with. ``poison``: an
    event that cannot be read at all (unsealed or decoded), with why; ``events`` stop
    before it."""

    events: list[Event]
    erasures: dict[int, list[Event]] = field(default_factory=dict)
    poison: tuple[Event, Exception] | None = None


async def read(pool: asyncpg.Pool, keyring: KeyRing, records: Sequence[RecordedEvent]) -> Batch:
    try:
        batch = Batch(decode(await keyring.unseal(records)))
    except Exception as error:
        if transient(error):
            raise
        batch = await _read_one_by_one(keyring, records)
    for e in batch.events:
        if isinstance(e.payload, UserErased):
            rows = await pool.fetch(_ERASED_STREAMS, needle(e.payload.user_id), e.position)
            batch.erasures[e.position] = decode(await keyring.unseal([to_record(r) for r in rows]))
    return batch


async def _read_one_by_one(keyring: KeyRing, records: Sequence[RecordedEvent]) -> Batch:
    """The events up to the first one that cannot be read, and that one as the poison."""
    events: list[Event] = []
    for r in records:
        try:
            events += decode(await keyring.unseal([r]))
        except Exception as e:
            if transient(e):
                raise
            return Batch(events, poison=(unread(r), e))
    return Batch(events)


def writes_for(projection: Projection, events: Sequence[Event], batch: Batch) -> list[Write]:
    """``projection``'s writes for ``events`` (part of ``batch``), erasures in their place."""
    if not batch.erasures or not isinstance(projection, Erasing):
        return projection.apply(events)
    writes: list[Write] = []
    start = 0
    for i, e in enumerate(events):
        erased = batch.erasures.get(e.position)
        if erased is not None:
            writes += projection.apply(events[start:i])
            writes += projection.erase(erased)
            start = i
    return writes + projection.apply(events[start:])
