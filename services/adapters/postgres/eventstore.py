"""The event log on PostgreSQL: atomic appends with optimistic concurrency and a hash
chain, stream reads, snapshots, and cross-process wake-ups for followers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from turnlog.services.adapters.postgres import snapshots
from turnlog.services.adapters.postgres.group_commit import GroupCommit
from turnlog.services.adapters.postgres.keys import PostgresKeys
from turnlog.services.adapters.postgres.migrations import migrate
from turnlog.services.adapters.postgres.rows import (
    APPEND,
    COLUMNS,
    LAST,
    RECEIVED_ONCE,
    columns,
    to_record,
)
from turnlog.services.adapters.postgres.tips import Tips
from turnlog.services.adapters.postgres.wakeups import CHANNEL, Wakeups
from turnlog.services.app.log import hashing
from turnlog.services.app.log.chain import Chained
from turnlog.services.app.log.errors import (
    ConcurrencyConflict,
    DuplicateMessage,
    Unavailable,
    transient,
)
from turnlog.services.app.log.records import NewEvent, RecordedEvent, Snapshot
from turnlog.services.app.sealing import KeyRing

# CHANNEL, COLUMNS and to_record moved to wakeups and rows; still importable from here.
__all__ = ["CHANNEL", "COLUMNS", "EventStore", "to_record"]

log = structlog.get_logger("turnlog.store")
T = TypeVar("T")


class EventStore:
    """Append-only event streams in one PostgreSQL table.

    Knows the last (version, hash) of streams it has touched, so an append to a warm
    stream is one round trip; rows never change, so that knowledge never goes stale.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        tip_cache_size: int = 100_000,
        batch_limit: int = 256,
        max_inflight: int = 2,
        retry_for: float = 120.0,
    ) -> None:
        """``retry_for``: seconds an append waits for the database to come back (a
        restart, a failover) before its error is raised."""
        self.pool = pool
        self.keyring = KeyRing(PostgresKeys(pool))  # one per log, so one cache of keys
        self.retry_for = retry_for
        self._outage_since: float | None = None
        self._tips = Tips(tip_cache_size)
        self._wakeups = Wakeups(pool)
        self._group = GroupCommit(
            pool,
            self._tips,
            lambda stream_id, expected, events: self._append_direct(
                self.pool, stream_id, expected, events
            ),
            self.announce,
            batch_limit=batch_limit,
            max_inflight=max_inflight,
        )

    @property
    def batch_limit(self) -> int:
        return self._group.batch_limit

    @property
    def max_inflight(self) -> int:
        return self._group.max_inflight

    @property
    def batches(self) -> int:
        """Group-commit transactions sent, for metrics."""
        return self._group.batches

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 2, max_size: int = 10) -> EventStore:
        """A store on a new connection pool, with the schema migrated."""
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, reset=_keep_session
            )
        except (OSError, asyncpg.PostgresError) as e:
            msg = f"cannot connect to PostgreSQL at {_redact(dsn)}: {e}"
            raise Unavailable(msg) from e
        async with pool.acquire() as conn:
            applied = await migrate(conn)
        if applied:
            log.info("schema migrated", versions=applied)
        return cls(pool)

    async def close(self) -> None:
        await self._group.close()
        await self._wakeups.close()
        try:
            async with asyncio.timeout(10):
                await self.pool.close()
        except TimeoutError:
            log.warning("connections still in use at close; terminating them")
            self.pool.terminate()

    # -- writing ------------------------------------------------------------------------

    async def append(
        self,
        stream_id: str,
        expected_version: int,
        events: Sequence[NewEvent],
        *,
        connection: asyncpg.Connection | None = None,
    ) -> list[RecordedEvent]:
        """Append ``events`` after ``expected_version`` (0 for a new stream), atomically.

        Raises ConcurrencyConflict, naming the actual version, when the stream is elsewhere.
        Appends made concurrently to different streams share one transaction (group
        commit). Given a ``connection`` inside the caller's transaction, the append commits
        with it instead; the caller then calls ``announce()`` once it has committed.
        Otherwise an append the database cannot take now (a restart) is tried again for
        up to ``retry_for`` seconds, and one whose commit went through on a connection that
        then failed is recognised by its hashes, so it is recorded once.
        """
        if not events:
            return []
        if connection is not None:
            return await self._append_direct(
                connection, stream_id, expected_version, events, remember=False
            )
        uncertain = False  # an attempt failed in a way that may have committed it

        async def attempt() -> list[RecordedEvent]:
            nonlocal uncertain
            try:
                return await self._group.append(stream_id, expected_version, events)
            except (ConcurrencyConflict, DuplicateMessage):
                if uncertain:  # was it that attempt that went through?
                    found = await self._appended(stream_id, expected_version, events)
                    if found:
                        return found
                raise
            except Exception as e:
                uncertain = uncertain or transient(e)
                raise

        return await self.patiently(attempt)

    async def _appended(
        self, stream_id: str, expected: int, events: Sequence[NewEvent]
    ) -> list[RecordedEvent]:
        """The records of ``events`` if they are in the log after ``expected`` (an append
        whose commit went through although its connection failed); else none."""
        rows = await self.pool.fetch(
            "SELECT version, position, hash, prev_hash FROM turnlog_events"
            " WHERE stream_id = $1 AND version > $2 AND version <= $3 ORDER BY version",
            stream_id,
            expected,
            expected + len(events),
        )
        if len(rows) != len(events):
            return []
        prepared = Chained(stream_id, expected, events, rows[0][3])
        if prepared.hashes != [r[2] for r in rows]:
            return []
        self._tips.remember(stream_id, expected + len(events), prepared.hashes[-1])
        return prepared.records([r[1] for r in rows])

    async def patiently(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, made again while it fails because the database is away, for up to
        ``retry_for`` seconds: for the reads and writes around an append that must not
        fail a turn over a database restart."""
        started, delay = time.monotonic(), 0.1
        while True:
            try:
                result = await call()
            except Exception as e:
                if not transient(e) or time.monotonic() - started > self.retry_for:
                    raise
                self._outage(e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if delay > 0.1:
                self._recovered()
            return result

    def _outage(self, error: BaseException) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning(
                "database unreachable; appends wait for it",
                error=str(error) or type(error).__name__,
                retry_for=self.retry_for,
            )

    def _recovered(self) -> None:
        if self._outage_since is not None:
            waited = time.monotonic() - self._outage_since
            self._outage_since = None
            log.info("database reachable again; appends go on", waited_s=round(waited, 1))

    async def _append_direct(
        self,
        db: asyncpg.Pool | asyncpg.Connection,
        stream_id: str,
        expected_version: int,
        events: Sequence[NewEvent],
        *,
        remember: bool = True,
    ) -> list[RecordedEvent]:
        prev = await self._tip_hash(db, stream_id, expected_version)
        batch = Chained(stream_id, expected_version, events, prev)
        try:
            positions = await db.fetchval(
                APPEND,
                stream_id,
                expected_version,
                prev,
                *columns(events),
                batch.prev_hashes,
                batch.hashes,
            )
        except asyncpg.PostgresError as e:
            await self._raise_conflict(e, stream_id, expected_version)
            raise
        if remember:
            self._tips.remember(stream_id, expected_version + len(events), batch.hashes[-1])
            self.announce()
        return batch.records(positions)

    async def _tip_hash(
        self, db: asyncpg.Pool | asyncpg.Connection, stream_id: str, expected_version: int
    ) -> bytes:
        if expected_version == 0:
            return hashing.GENESIS
        tip = self._tips.get(stream_id)
        if tip is None or tip[0] != expected_version:
            row = await db.fetchrow(LAST, stream_id)
            actual = row[0] if row else 0
            if row is None or actual != expected_version:
                raise ConcurrencyConflict(stream_id, expected_version, actual)
            tip = (row[0], row[1])
            self._tips.remember(stream_id, *tip)
        return tip[1]

    async def _raise_conflict(
        self, error: asyncpg.PostgresError, stream_id: str, expected: int
    ) -> None:
        state = getattr(error, "sqlstate", None)
        if state == "TL409":
            self._tips.forget(stream_id)
            raise ConcurrencyConflict(stream_id, expected, int(error.detail or 0)) from None
        if state == "23505" and getattr(error, "constraint_name", "") == RECEIVED_ONCE:
            raise DuplicateMessage(getattr(error, "detail", "") or "") from None
        if state in ("23505", "TL412"):
            self._tips.forget(stream_id)
            row = await self.pool.fetchrow(LAST, stream_id)
            raise ConcurrencyConflict(stream_id, expected, row[0] if row else 0) from None

    # -- reading ------------------------------------------------------------------------

    async def read_stream(
        self, stream_id: str, after_version: int = 0, to_version: int | None = None
    ) -> list[RecordedEvent]:
        """Events of one stream with ``after_version < version <= to_version``, in order."""
        rows = await self.pool.fetch(
            f"SELECT {COLUMNS} FROM turnlog_events WHERE stream_id = $1 AND version > $2"
            " AND ($3::integer IS NULL OR version <= $3) ORDER BY version",
            stream_id,
            after_version,
            to_version,
        )
        records = [to_record(r) for r in rows]
        if records and to_version is None:
            self._tips.remember(stream_id, records[-1].version, records[-1].hash)
        return records

    async def read_documents_written_by(self, message_ids: Sequence[str]) -> list[RecordedEvent]:
        """Collection writes made in answer to these inbound messages, in log order."""
        rows = await self.pool.fetch(
            f"SELECT {COLUMNS} FROM turnlog_events WHERE type LIKE 'document.%'"
            " AND correlation_id = ANY($1::text[]) ORDER BY position",
            list(message_ids),
        )
        return [to_record(r) for r in rows]

    async def last_position(self) -> int:
        return int(
            await self.pool.fetchval("SELECT coalesce(max(position), 0) FROM turnlog_events")
        )

    # -- snapshots ----------------------------------------------------------------------

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        await snapshots.save(self.pool, snapshot)

    async def load_snapshot(self, stream_id: str) -> Snapshot | None:
        return await snapshots.load(self.pool, stream_id)

    # -- wake-ups -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[PoolConnectionProxy]:
        """A connection in a transaction, for appends and key checks that commit as one."""
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    def local_waker(self) -> asyncio.Event:
        """An event set whenever this store commits an append (for in-process followers)."""
        return self._wakeups.local_waker()

    def drop_waker(self, waker: asyncio.Event) -> None:
        self._wakeups.drop_waker(waker)

    def announce(self) -> None:
        """Wake followers: in this process at once, in others by a coalesced NOTIFY."""
        self._wakeups.announce()


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Pool connections go back as they are, without asyncpg's default reset query (a
    round trip per release). Nothing here leaves session state behind: listeners are
    removed before release, and SET LOCAL and advisory locks end with their transaction;
    asyncpg still rolls back a transaction left open."""


def _redact(dsn: str) -> str:
    if "@" not in dsn or "://" not in dsn:
        return dsn
    scheme, rest = dsn.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else dsn
