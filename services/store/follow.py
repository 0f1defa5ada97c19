"""Reading the global log in position order without ever skipping a late commit.

Writers commit out of position order: position 7 can become visible before 6. A reader
that jumped past the hole at 6 would never see it. So the reader stops at a hole until it
knows the hole is permanent. Each append takes its transaction id before drawing a
position, so any transaction that could still fill a hole seen under snapshot S was
already running under S, i.e. has an xid below S's xmax. Once the oldest running
transaction (xmin) is at or past that xmax, every such writer has finished and whatever is
still missing (a rolled-back append) never will be there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg

from turnlog.services.store.eventstore import CHANNEL, COLUMNS, EventStore, to_record
from turnlog.services.store.records import RecordedEvent

_READ = f"""
WITH snap AS MATERIALIZED (
    SELECT pg_snapshot_xmin(s)::text::bigint AS xmin, pg_snapshot_xmax(s)::text::bigint AS xmax
      FROM pg_current_snapshot() AS s
)
SELECT snap.xmin, snap.xmax, e.*
  FROM snap LEFT JOIN LATERAL (
      SELECT {COLUMNS} FROM turnlog_events WHERE position > $1 ORDER BY position LIMIT $2
  ) AS e ON true
"""


class GlobalReader:
    """Reads the log after ``position`` in batches, holding back at undecided holes."""

    def __init__(self, store: EventStore, position: int = 0, batch_size: int = 1000) -> None:
        self.store = store
        self.position = position
        self.batch_size = batch_size
        self._hole: tuple[int, int] | None = None  # (first missing position, xmax bound)

    @property
    def waiting_on_hole(self) -> bool:
        return self._hole is not None

    async def read(self) -> list[RecordedEvent]:
        """The next events in position order; empty when nothing safe is there yet."""
        rows = await self.store.pool.fetch(_READ, self.position, self.batch_size)
        xmin, xmax = rows[0][0], rows[0][1]
        expected = self.position + 1
        out: list[RecordedEvent] = []
        for row in rows:
            if row[2] is None:
                break
            position = row[2]
            if position > expected:
                if self._hole is None or self._hole[0] != expected:
                    self._hole = (expected, xmax)
                if xmin < self._hole[1]:
                    break  # a writer that may fill the hole is still running
                self._hole = None  # permanent hole: nothing will ever be written there
            elif self._hole is not None and self._hole[0] == expected:
                self._hole = None
            out.append(to_record(row[2:]))
            expected = position + 1
        self.position = expected - 1 if out else self.position
        return out


async def follow(
    store: EventStore,
    position: int = 0,
    *,
    batch_size: int = 1000,
    idle_timeout: float = 5.0,
    hole_recheck: float = 0.05,
) -> AsyncIterator[list[RecordedEvent]]:
    """Batches of events after ``position``, forever: catch-up first, then live.

    Sleeps until an append is announced (in-process or by NOTIFY from another process);
    while holding at a hole it re-checks briefly, since a rolled-back writer announces
    nothing. ``idle_timeout`` only bounds how long a lost notification can delay.
    """
    reader = GlobalReader(store, position, batch_size)
    waker = store.local_waker()
    listener: asyncpg.Connection = await store.pool.acquire()

    def wake(*_: object) -> None:
        waker.set()

    await listener.add_listener(CHANNEL, wake)
    try:
        while True:
            waker.clear()
            batch = await reader.read()
            if batch:
                yield batch
                continue
            timeout = hole_recheck if reader.waiting_on_hole else idle_timeout
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waker.wait(), timeout)
    finally:
        store.drop_waker(waker)
        with contextlib.suppress(Exception):
            await listener.remove_listener(CHANNEL, wake)
        await store.pool.release(listener)
