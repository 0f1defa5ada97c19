"""The event log on PostgreSQL: atomic appends with optimistic concurrency and a hash
chain, stream reads, snapshots, and cross-process wake-ups for followers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import msgspec
import structlog
from asyncpg.pool import PoolConnectionProxy

from turnlog.services.adapters.postgres.keys import PostgresKeys
from turnlog.services.adapters.postgres.migrations import migrate
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

log = structlog.get_logger("turnlog.store")
T = TypeVar("T")

CHANNEL = "turnlog_events"
NOTIFY_EVERY = 0.005
COLUMNS = (
    "position, stream_id, version, type, schema_version, payload, recorded_at,"
    " correlation_id, causation_id, actor, prev_hash, hash"
)
_APPEND = "SELECT turnlog_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
_LAST = (
    "SELECT version, hash FROM turnlog_events WHERE stream_id = $1 ORDER BY version DESC LIMIT 1"
)
_RECEIVED_ONCE = "turnlog_events_received_message"
_TIPS = (
    "SELECT DISTINCT ON (stream_id) stream_id, version, hash FROM turnlog_events"
    " WHERE stream_id = ANY($1::text[]) ORDER BY stream_id, version DESC"
)
_APPEND_ROWS = "SELECT conflicts, positions FROM turnlog_append_rows($1, $2, $3, $4, $5, $6)"
_encode_rows = msgspec.json.Encoder().encode


@dataclass
class _Request:
    stream_id: str
    expected: int
    events: Sequence[NewEvent]
    future: asyncio.Future[list[RecordedEvent]]


class _Row(msgspec.Struct, frozen=True):
    """An event's small columns for turnlog_append_rows, under that function's keys.
    Positional, unlike the contracts: one is built per event appended."""

    q: int  # its request's place in the batch, from 1
    v: int
    t: str
    s: int
    r: datetime  # UTC, so the server reads the instant asyncpg would have sent
    c: str | None
    u: str | None
    a: str | None


def _document(rows: list[_Row]) -> str:
    try:
        return _encode_rows(rows).decode()
    except (TypeError, ValueError) as e:  # what asyncpg would have refused as well
        raise msgspec.EncodeError(str(e)) from e


def _fail(request: _Request, error: BaseException) -> None:
    if not request.future.done():
        request.future.set_exception(error)


def _columns(events: Sequence[NewEvent]) -> tuple[list[Any], ...]:
    return (
        [e.type for e in events],
        [e.schema_version for e in events],
        [e.payload for e in events],
        [e.recorded_at for e in events],
        [e.correlation_id for e in events],
        [e.causation_id for e in events],
        [e.actor for e in events],
    )


def to_record(row: asyncpg.Record | Sequence[Any]) -> RecordedEvent:
    return RecordedEvent(
        position=row[0],
        stream_id=row[1],
        version=row[2],
        type=row[3],
        schema_version=row[4],
        payload=row[5],
        recorded_at=row[6],
        correlation_id=row[7],
        causation_id=row[8],
        actor=row[9],
        prev_hash=row[10],
        hash=row[11],
    )


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
        self.batch_limit = batch_limit
        self.max_inflight = max_inflight
        self._queue: deque[_Request] = deque()
        self._inflight = 0
        self._busy: set[str] = set()
        self._flushers: set[asyncio.Task[None]] = set()
        self.batches = 0  # group-commit transactions sent, for metrics
        self._tips: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        self._tip_cache_size = tip_cache_size
        self._local_wakers: set[asyncio.Event] = set()
        self._notify_pending = False
        self._notifier: asyncio.Task[None] | None = None

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
        if self._flushers:
            await asyncio.gather(*self._flushers, return_exceptions=True)
        if self._notifier is not None:
            with contextlib.suppress(Exception):
                await self._notifier
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
                return await self._append_once(stream_id, expected_version, events)
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

    async def _append_once(
        self, stream_id: str, expected_version: int, events: Sequence[NewEvent]
    ) -> list[RecordedEvent]:
        if self._inflight == 0 and not self._queue:
            # Nothing in flight: go straight to the database; whatever arrives meanwhile
            # queues up and is committed in batches right behind.
            self._inflight += 1
            self._busy.add(stream_id)
            try:
                return await self._append_direct(self.pool, stream_id, expected_version, events)
            finally:
                self._busy.discard(stream_id)
                self._inflight -= 1
                self._kick()
        future: asyncio.Future[list[RecordedEvent]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(stream_id, expected_version, events, future))
        self._kick()
        return await future

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
        self._remember_tip(stream_id, expected + len(events), prepared.hashes[-1])
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

    def _kick(self) -> None:
        """Start batch flushers while there is queued work and room in flight."""
        loop = asyncio.get_running_loop()
        while self._queue and self._inflight < self.max_inflight:
            self._inflight += 1
            task = loop.create_task(self._flush_queue())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)

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
                _APPEND,
                stream_id,
                expected_version,
                prev,
                *_columns(events),
                batch.prev_hashes,
                batch.hashes,
            )
        except asyncpg.PostgresError as e:
            await self._raise_conflict(e, stream_id, expected_version)
            raise
        if remember:
            self._remember_tip(stream_id, expected_version + len(events), batch.hashes[-1])
            self.announce()
        return batch.records(positions)

    async def _flush_queue(self) -> None:
        try:
            while batch := self._take_batch():
                try:
                    await self._flush(batch)
                finally:
                    self._busy.difference_update(r.stream_id for r in batch)
        finally:
            self._inflight -= 1
            if self._queue and self._inflight == 0:
                self._kick()

    def _take_batch(self) -> list[_Request]:
        """Queued requests, oldest first, at most one per stream, none for a stream that
        another batch is writing, and ``batch_limit`` in all. Marks their streams busy."""
        batch: list[_Request] = []
        later: list[_Request] = []
        while self._queue and len(batch) < self.batch_limit:
            request = self._queue.popleft()
            if request.stream_id in self._busy:
                later.append(request)
            else:
                self._busy.add(request.stream_id)
                batch.append(request)
        self._queue.extendleft(reversed(later))
        return batch

    async def _flush(self, batch: list[_Request]) -> None:
        try:
            await self._refresh_tips(batch)
            prepared: list[tuple[_Request, Chained]] = []
            for request in batch:
                tip = self._tips.get(request.stream_id)
                if request.expected == 0:
                    prev = hashing.GENESIS
                elif tip is not None and tip[0] == request.expected:
                    prev = tip[1]
                else:
                    _fail(
                        request,
                        ConcurrencyConflict(
                            request.stream_id, request.expected, tip[0] if tip else 0
                        ),
                    )
                    continue
                prepared.append(
                    (request, Chained(request.stream_id, request.expected, request.events, prev))
                )
            if prepared:
                await self._append_prepared(prepared)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, msgspec.EncodeError):
            # A writer in another process raced one of these streams (or the connection
            # failed, or an event cannot be encoded): retry each request on its own, so
            # each gets its own outcome.
            await asyncio.gather(*(self._retry_alone(r) for r in batch if not r.future.done()))

    async def _append_prepared(self, prepared: list[tuple[_Request, Chained]]) -> None:
        rows: list[_Row] = []
        payloads: list[bytes] = []
        hashes: list[bytes] = []
        for index, (_, p) in enumerate(prepared, start=1):
            version = p.expected
            for e in p.events:
                version += 1
                at = e.recorded_at
                rows.append(
                    _Row(
                        index,
                        version,
                        e.type,
                        e.schema_version,
                        at if at.tzinfo is UTC else at.astimezone(UTC),
                        e.correlation_id,
                        e.causation_id,
                        e.actor,
                    )
                )
                payloads.append(e.payload)
            hashes.extend(p.hashes)
        self.batches += 1
        row = await self.pool.fetchrow(
            _APPEND_ROWS,
            [p.stream_id for _, p in prepared],
            [p.expected for _, p in prepared],
            [p.prev for _, p in prepared],
            _document(rows),
            payloads,
            b"".join(hashes),
        )
        assert row is not None  # the function always returns one row
        conflicts, positions = row[0], row[1]
        taken = 0
        for (request, p), actual in zip(prepared, conflicts, strict=True):
            if actual is not None:
                self._tips.pop(p.stream_id, None)
                _fail(request, ConcurrencyConflict(p.stream_id, p.expected, actual))
                continue
            count = len(p.events)
            records = p.records(positions[taken : taken + count])
            taken += count
            self._remember_tip(p.stream_id, p.expected + count, p.hashes[-1])
            if not request.future.done():
                request.future.set_result(records)
        self.announce()

    async def _retry_alone(self, request: _Request) -> None:
        try:
            records = await self._append_direct(
                self.pool, request.stream_id, request.expected, request.events
            )
        except Exception as e:
            _fail(request, e)
        else:
            if not request.future.done():
                request.future.set_result(records)

    async def _refresh_tips(self, batch: list[_Request]) -> None:
        """Read the last (version, hash) of every stream whose tip this store does not
        know at the expected version, in one query."""
        unknown = [
            r.stream_id
            for r in batch
            if r.expected > 0 and self._tips.get(r.stream_id, (-1,))[0] != r.expected
        ]
        if not unknown:
            return
        rows = await self.pool.fetch(_TIPS, unknown)
        for stream_id in unknown:
            self._tips.pop(stream_id, None)
        for row in rows:
            self._remember_tip(row[0], row[1], row[2])

    async def _tip_hash(
        self, db: asyncpg.Pool | asyncpg.Connection, stream_id: str, expected_version: int
    ) -> bytes:
        if expected_version == 0:
            return hashing.GENESIS
        tip = self._tips.get(stream_id)
        if tip is None or tip[0] != expected_version:
            row = await db.fetchrow(_LAST, stream_id)
            actual = row[0] if row else 0
            if row is None or actual != expected_version:
                raise ConcurrencyConflict(stream_id, expected_version, actual)
            tip = (row[0], row[1])
            self._remember_tip(stream_id, *tip)
        return tip[1]

    async def _raise_conflict(
        self, error: asyncpg.PostgresError, stream_id: str, expected: int
    ) -> None:
        state = getattr(error, "sqlstate", None)
        if state == "TL409":
            self._tips.pop(stream_id, None)
            raise ConcurrencyConflict(stream_id, expected, int(error.detail or 0)) from None
        if state == "23505" and getattr(error, "constraint_name", "") == _RECEIVED_ONCE:
            raise DuplicateMessage(getattr(error, "detail", "") or "") from None
        if state in ("23505", "TL412"):
            self._tips.pop(stream_id, None)
            row = await self.pool.fetchrow(_LAST, stream_id)
            raise ConcurrencyConflict(stream_id, expected, row[0] if row else 0) from None

    def _remember_tip(self, stream_id: str, version: int, digest: bytes) -> None:
        self._tips[stream_id] = (version, digest)
        self._tips.move_to_end(stream_id)
        if len(self._tips) > self._tip_cache_size:
            self._tips.popitem(last=False)

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
            self._remember_tip(stream_id, records[-1].version, records[-1].hash)
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
        await self.pool.execute(
            "INSERT INTO turnlog_snapshots (stream_id, version, type, schema_version, state, hash)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (stream_id) DO UPDATE SET"
            " version = excluded.version, type = excluded.type,"
            " schema_version = excluded.schema_version, state = excluded.state,"
            " hash = excluded.hash, taken_at = now()"
            " WHERE turnlog_snapshots.version < excluded.version",
            snapshot.stream_id,
            snapshot.version,
            snapshot.type,
            snapshot.schema_version,
            snapshot.state,
            snapshot.hash,
        )

    async def load_snapshot(self, stream_id: str) -> Snapshot | None:
        row = await self.pool.fetchrow(
            "SELECT stream_id, version, type, schema_version, state, hash"
            " FROM turnlog_snapshots WHERE stream_id = $1",
            stream_id,
        )
        if row is None:
            return None
        return Snapshot(
            stream_id=row[0],
            version=row[1],
            type=row[2],
            schema_version=row[3],
            state=row[4],
            hash=row[5],
        )

    # -- wake-ups -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[PoolConnectionProxy]:
        """A connection in a transaction, for appends and key checks that commit as one."""
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    def local_waker(self) -> asyncio.Event:
        """An event set whenever this store commits an append (for in-process followers)."""
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

    async def _notify_others(self) -> None:
        """One NOTIFY in flight at a time, coalescing the appends made meanwhile.

        NOTIFY is sent after commit, outside the append's transaction: PostgreSQL
        serialises the commits of notifying transactions, which would cost group commit.
        """
        while self._notify_pending:
            self._notify_pending = False
            try:
                await self.pool.execute("SELECT pg_notify($1, '')", CHANNEL)
            except Exception as e:  # a hint only: followers also wake on their own
                log.warning("notify failed", error=str(e) or type(e).__name__)
                return
            await asyncio.sleep(NOTIFY_EVERY)  # a wake-up hint: one per few ms is plenty


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
