"""The event log on PostgreSQL: atomic appends with optimistic concurrency and a hash
chain, stream reads, snapshots, and cross-process wake-ups for followers."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import asyncpg
import structlog

from turnlog.services.store import hashing
from turnlog.services.store.errors import ConcurrencyConflict, StoreError
from turnlog.services.store.migrations import migrate
from turnlog.services.store.records import NewEvent, RecordedEvent, Snapshot

log = structlog.get_logger("turnlog.store")

CHANNEL = "turnlog_events"
COLUMNS = (
    "position, stream_id, version, type, schema_version, payload, recorded_at,"
    " correlation_id, causation_id, actor, prev_hash, hash"
)
_APPEND = "SELECT turnlog_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
_LAST = (
    "SELECT version, hash FROM turnlog_events WHERE stream_id = $1 ORDER BY version DESC LIMIT 1"
)


def to_record(row: asyncpg.Record) -> RecordedEvent:
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

    def __init__(self, pool: asyncpg.Pool, *, tip_cache_size: int = 100_000) -> None:
        self.pool = pool
        self._tips: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        self._tip_cache_size = tip_cache_size
        self._local_wakers: set[asyncio.Event] = set()
        self._notify_pending = False
        self._notifier: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 2, max_size: int = 10) -> EventStore:
        """A store on a new connection pool, with the schema migrated."""
        try:
            pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
        except (OSError, asyncpg.PostgresError) as e:
            msg = f"cannot connect to PostgreSQL at {_redact(dsn)}: {e}"
            raise StoreError(msg) from e
        async with pool.acquire() as conn:
            applied = await migrate(conn)
        if applied:
            log.info("schema migrated", versions=applied)
        return cls(pool)

    async def close(self) -> None:
        if self._notifier is not None:
            with contextlib.suppress(Exception):
                await self._notifier
        await self.pool.close()

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
        Given a ``connection`` inside the caller's transaction, the append commits with it;
        the caller then calls ``announce()`` once that transaction has committed.
        """
        if not events:
            return []
        db = connection if connection is not None else self.pool
        prev = await self._tip_hash(db, stream_id, expected_version)
        columns: list[list[Any]] = [[] for _ in range(7)]
        prev_hashes, hashes = [], []
        for offset, e in enumerate(events, start=1):
            body = hashing.canonical(
                stream_id,
                expected_version + offset,
                e.type,
                e.schema_version,
                e.recorded_at,
                e.correlation_id,
                e.causation_id,
                e.actor,
                e.payload,
            )
            digest = hashing.chain(prev, body)
            for column, value in zip(
                columns,
                (
                    e.type,
                    e.schema_version,
                    e.payload,
                    e.recorded_at,
                    e.correlation_id,
                    e.causation_id,
                    e.actor,
                ),
                strict=False,
            ):
                column.append(value)
            prev_hashes.append(prev)
            hashes.append(digest)
            prev = digest
        try:
            positions = await db.fetchval(
                _APPEND,
                stream_id,
                expected_version,
                prev_hashes[0],
                *columns[:7],
                prev_hashes,
                hashes,
            )
        except asyncpg.PostgresError as e:
            await self._raise_conflict(e, stream_id, expected_version)
            raise
        if connection is None:
            self._remember_tip(stream_id, expected_version + len(events), hashes[-1])
            self.announce()
        return [
            RecordedEvent(
                position=p,
                stream_id=stream_id,
                version=expected_version + i,
                type=e.type,
                schema_version=e.schema_version,
                payload=e.payload,
                recorded_at=e.recorded_at,
                correlation_id=e.correlation_id,
                causation_id=e.causation_id,
                actor=e.actor,
                prev_hash=ph,
                hash=h,
            )
            for i, (p, e, ph, h) in enumerate(
                zip(positions, events, prev_hashes, hashes, strict=True), start=1
            )
        ]

    async def _tip_hash(
        self, db: asyncpg.Pool | asyncpg.Connection, stream_id: str, expected_version: int
    ) -> bytes:
        if expected_version == 0:
            return hashing.GENESIS
        tip = self._tips.get(stream_id)
        if tip is None or tip[0] != expected_version:
            row = await db.fetchrow(_LAST, stream_id)
            actual = row[0] if row else 0
            if actual != expected_version:
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

    async def stream_version(self, stream_id: str) -> int:
        row = await self.pool.fetchrow(_LAST, stream_id)
        return int(row[0]) if row else 0

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
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                log.warning("notify failed", error=str(e))
                return


def _redact(dsn: str) -> str:
    if "@" not in dsn or "://" not in dsn:
        return dsn
    scheme, rest = dsn.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else dsn
