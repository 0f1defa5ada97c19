"""Reading the global log in position order without ever skipping a late commit.

Writers commit out of position order: position 7 can become visible before 6. A reader
that jumped past the hole at 6 would never see it, so the reader stops at a hole until it
knows the hole is permanent.

Each append takes its transaction id (xid) before it draws a position. So when a reader
sees position h but not g < h, the writer holding g already had its xid when the reader
looked. The reader then draws a fresh xid N (a tiny committed transaction): every such
writer has an xid below N. Once no transaction below N is running (a later snapshot's
xmin >= N), the writer of g has finished, and if g is still missing it was rolled back.
(A snapshot's xmax is one past the latest *completed* xid, not the next xid to assign, so
it cannot serve as that bound: a running writer can sit above it, in no xip list.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.rows import COLUMNS, to_record
from turnlog.services.adapters.postgres.wakeups import CHANNEL
from turnlog.services.app.log.records import RecordedEvent

_READ = f"""
WITH snap AS MATERIALIZED (
    SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin
)
SELECT snap.xmin, NULL, e.*
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
        self._hole: tuple[int, int] | None = None  # (first missing position, xid bound)
        self._rewind: int | None = None
        self.batch_after = position  # the position the last batch read follows
        self.reads = 0
        self.held_at_holes = 0

    def seek(self, position: int) -> None:
        """Read on from after ``position``."""
        self.position = position
        self._hole = None

    def rewind(self, position: int) -> None:
        """Read on from after ``position`` (if it is behind) from the next read on: safe
        to call while a read is under way."""
        self._rewind = position if self._rewind is None else min(self._rewind, position)

    @property
    def waiting_on_hole(self) -> bool:
        return self._hole is not None

    async def read(self) -> list[RecordedEvent]:
        """The next events in position order; empty when nothing safe is there yet."""
        if self._rewind is not None:
            if self._rewind < self.position:
                self.seek(self._rewind)
            self._rewind = None
        self.batch_after = self.position
        out: list[RecordedEvent] = []
        for _ in range(2):
            rows = await self.store.pool.fetch(_READ, self.position, self.batch_size)
            self.reads += 1
            batch, hole = self._take(rows)
            out += batch
            if hole is None:
                break
            if self._hole is not None and self._hole[0] == hole:
                self.held_at_holes += 1  # a writer that may fill it is still running
                break
            bound = await self.store.pool.fetchval("SELECT pg_current_xact_id()::text::bigint")
            self._hole = (hole, bound)
        return out

    def _take(self, rows: list[asyncpg.Record]) -> tuple[list[RecordedEvent], int | None]:
        """Rows up to the first undecided hole, and that hole's position (None if none)."""
        xmin = rows[0][0]
        expected = self.position + 1
        out: list[RecordedEvent] = []
        hole: int | None = None
        for row in rows:
            position = row[2]
            if position is None:
                break
            if position > expected:
                known = self._hole
                if known is None or known[0] != expected or xmin < known[1]:
                    hole = expected
                    break
            if self._hole is not None and self._hole[0] <= position:
                self._hole = None  # filled, or known to stay empty
            out.append(to_record(row[2:]))
            expected = position + 1
        self.position = expected - 1
        return out, hole


async def follow(
    reader: GlobalReader,
    *,
    idle_timeout: float = 5.0,
    hole_recheck: float = 0.05,
    linger: float = 0.0,
) -> AsyncGenerator[list[RecordedEvent], None]:
    """Batches of events after ``position``, forever: catch-up first, then live.

    Sleeps until an append is announced (in-process or by NOTIFY from another process);
    while holding at a hole it re-checks briefly, since a rolled-back writer announces
    nothing. ``idle_timeout`` only bounds how long a lost notification can delay. When
    its listening connection closes (the database restarted) it raises
    ConnectionResetError, for its owner to follow again on a new one.

    ``linger``: once live, wait that long after a wake-up or a batch before reading, so
    that appends made close together are read (and handled) as one batch.
    """
    async with _listening(reader.store) as wakeup:
        while True:
            wakeup.waker.clear()
            if wakeup.closed:  # the database restarted: no more notifications on it
                raise ConnectionResetError("the follower's database connection was closed")
            batch = await reader.read()
            if batch:
                yield batch
                if linger and len(batch) < reader.batch_size:  # live, not catching up
                    await asyncio.sleep(linger)
                continue
            timeout = hole_recheck if reader.waiting_on_hole else idle_timeout
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that arrives as the wait completes, and the follower never stops.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await wakeup.waker.wait()
                if linger:
                    await asyncio.sleep(linger)


@dataclass
class _Wakeup:
    """``waker`` is set by every append announced; ``closed`` once the connection that
    listens for NOTIFY has closed."""

    waker: asyncio.Event
    closed: bool = False


@contextlib.asynccontextmanager
async def _listening(store: EventStore) -> AsyncIterator[_Wakeup]:
    """A wake-up for appends made in this process and, through a pool connection that
    LISTENs, in the others."""
    wakeup = _Wakeup(store.local_waker())
    listener: PoolConnectionProxy = await store.pool.acquire()

    def wake(*_: object) -> None:
        wakeup.waker.set()

    def gone(*_: object) -> None:
        wakeup.closed = True
        wakeup.waker.set()

    try:  # cancelled while it starts to LISTEN, the connection still goes back
        await listener.add_listener(CHANNEL, wake)
        listener.add_termination_listener(gone)
        yield wakeup
    finally:
        store.drop_waker(wakeup.waker)
        with contextlib.suppress(Exception):
            listener.remove_termination_listener(gone)
            await listener.remove_listener(CHANNEL, wake)
        with contextlib.suppress(Exception):  # one the pool took back already, closed
            await store.pool.release(listener)
