"""Wake-ups for the log's followers: at once in this process, by a coalesced NOTIFY in others."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog

log = structlog.get_logger("turnlog.store")

CHANNEL = "turnlog_events"
# At most one NOTIFY per this many seconds: a wake-up hint, coalesced. Short, for a
# follower in another process (the relay) learns of a commit no sooner.
NOTIFY_EVERY = 0.001


class Wakeups:
    """The wakers of this process's followers, and the NOTIFY that wakes the others'."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._local_wakers: set[asyncio.Event] = set()
        self._notify_pending = False
        self._notifier: asyncio.Task[None] | None = None

    def local_waker(self) -> asyncio.Event:
        """An event set whenever an append commits (for in-process followers)."""
        waker = asyncio.Event()
        self._local_wakers.add(waker)
        return waker

    def drop_waker(self, waker: asyncio.Event) -> None:
        self._local_wakers.discard(waker)

    def announce(self) -> None:
        """Wake followers: in this process at once, in others by a coalesced NOTIFY."""
        for waker in self._local_wakers:
            waker.set()
        self._notify_pending = True
        if self._notifier is None or self._notifier.done():
            self._notifier = asyncio.get_running_loop().create_task(self._notify_others())

    async def close(self) -> None:
        """Wait for the NOTIFY in flight, if any."""
        if self._notifier is not None:
            with contextlib.suppress(Exception):
                await self._notifier

    async def _notify_others(self) -> None:
        """One NOTIFY in flight at a time, coalescing the appends made meanwhile.

        NOTIFY is sent after commit, outside the append's transaction: PostgreSQL
        serialises the commits of notifying transactions, which would cost group commit.
        """
        loop = asyncio.get_running_loop()
        while self._notify_pending:
            self._notify_pending = False
            sent = loop.time()
            try:
                await self.pool.execute("SELECT pg_notify($1, '')", CHANNEL)
            except Exception as e:  # a hint only: followers also wake on their own
                log.warning("notify failed", error=str(e) or type(e).__name__)
                return
            await asyncio.sleep(sent + NOTIFY_EVERY - loop.time())
