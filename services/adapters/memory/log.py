"""The event log and the users' keys in memory: versions checked, hashes chained and
messages received once, as on PostgreSQL; a transaction's appends land together or not at
all."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from msgspec.structs import replace

from turnlog.services.app.log import hashing
from turnlog.services.app.log.chain import Chained
from turnlog.services.app.log.errors import ConcurrencyConflict, DuplicateMessage
from turnlog.services.app.log.records import NewEvent, RecordedEvent, Snapshot
from turnlog.services.app.ports import KeyId
from turnlog.services.app.sealing import KeyRing

T = TypeVar("T")
RECEIVED = "session.message_received"


class MemoryKeys:
    """The users' keys by generation; an erased one is kept as None."""

    def __init__(self) -> None:
        self._keys: dict[str, dict[int, bytes | None]] = {}

    async def latest(self, user_id: str) -> tuple[int, bytes | None] | None:
        keys = self._keys.get(user_id)
        if not keys:
            return None
        generation = max(keys)
        return generation, keys[generation]

    async def create(self, user_id: str, generation: int, key: bytes) -> None:
        self._keys.setdefault(user_id, {}).setdefault(generation, key)

    async def find(self, wanted: Sequence[KeyId]) -> list[tuple[str, int, bytes | None]]:
        found = []
        for user_id, generation in wanted:
            keys = self._keys.get(user_id, {})
            if generation in keys:
                found.append((user_id, generation, keys[generation]))
        return found

    async def live(self, holding: Any, user_id: str, generation: int) -> bool:
        return self._keys.get(user_id, {}).get(generation) is not None

    async def destroy(self, holding: Any, user_id: str) -> list[int]:
        keys = self._keys.get(user_id, {})
        destroyed = sorted(g for g, k in keys.items() if k is not None)
        for generation in destroyed:
            keys[generation] = None
        return destroyed


class Transaction:
    """Appends made with ``connection=`` this: kept aside, applied at commit."""

    def __init__(self) -> None:
        self.appends: list[tuple[str, int, list[RecordedEvent]]] = []


class MemoryLog:
    """Every stream in one list, positions from 1; snapshots by stream."""

    def __init__(self, keyring: KeyRing | None = None) -> None:
        self.keyring = keyring or KeyRing(MemoryKeys())
        self.events: list[RecordedEvent] = []
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._snapshots: dict[str, Snapshot] = {}
        self._received: set[str] = set()
        self._lock = asyncio.Lock()
        self._wakers: set[asyncio.Event] = set()

    async def append(
        self,
        stream_id: str,
        expected_version: int,
        events: Sequence[NewEvent],
        *,
        connection: Any = None,
    ) -> list[RecordedEvent]:
        if not events:
            return []
        if isinstance(connection, Transaction):
            records = self._chained(stream_id, expected_version, events, connection)
            connection.appends.append((stream_id, expected_version, records))
            return records
        records = self._chained(stream_id, expected_version, events, None)
        placed = self._commit([(stream_id, expected_version, records)])
        self.announce()
        return placed

    def _chained(
        self, stream_id: str, expected: int, events: Sequence[NewEvent], tx: Transaction | None
    ) -> list[RecordedEvent]:
        stream = list(self._streams.get(stream_id, ()))
        for appended_to, _, records in tx.appends if tx is not None else ():
            if appended_to == stream_id:
                stream += records
        if len(stream) != expected:
            raise ConcurrencyConflict(stream_id, expected, len(stream))
        prev = stream[-1].hash if stream else hashing.GENESIS
        chained = Chained(stream_id, expected, events, prev)
        # where they will be, unless other appends land before the transaction commits
        after = len(self.events) + (sum(len(r) for _, _, r in tx.appends) if tx else 0)
        return chained.records(range(after + 1, after + 1 + len(events)))

    def _commit(self, appends: list[tuple[str, int, list[RecordedEvent]]]) -> list[RecordedEvent]:
        received = {
            r.correlation_id or ""
            for _, _, records in appends
            for r in records
            if r.type == RECEIVED
        }
        for _, _, records in appends:
            for r in records:
                if r.type == RECEIVED and r.correlation_id in self._received:
                    raise DuplicateMessage(f"message {r.correlation_id} already received")
        lengths: dict[str, int] = {}
        for stream_id, expected, records in appends:
            actual = lengths.get(stream_id, len(self._streams.get(stream_id, ())))
            if actual != expected:
                raise ConcurrencyConflict(stream_id, expected, actual)
            lengths[stream_id] = actual + len(records)
        placed = []
        for stream_id, _, records in appends:
            stream = self._streams.setdefault(stream_id, [])
            for r in records:
                placed.append(replace(r, position=len(self.events) + 1))
                self.events.append(placed[-1])
                stream.append(placed[-1])
        self._received |= received
        return placed

    async def read_stream(
        self, stream_id: str, after_version: int = 0, to_version: int | None = None
    ) -> list[RecordedEvent]:
        stream = self._streams.get(stream_id, [])
        return [
            r
            for r in stream
            if r.version > after_version and (to_version is None or r.version <= to_version)
        ]

    async def read_after(self, position: int, limit: int | None = None) -> list[RecordedEvent]:
        """Events of every stream after ``position``, in log order (for followers)."""
        found = self.events[position:]
        return found if limit is None else found[:limit]

    async def load_snapshot(self, stream_id: str) -> Snapshot | None:
        return self._snapshots.get(stream_id)

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        kept = self._snapshots.get(snapshot.stream_id)
        if kept is None or kept.version < snapshot.version:
            self._snapshots[snapshot.stream_id] = snapshot

    async def last_position(self) -> int:
        return len(self.events)

    async def patiently(self, call: Callable[[], Awaitable[T]]) -> T:
        return await call()  # memory does not go away

    def announce(self) -> None:
        for waker in self._wakers:
            waker.set()

    def local_waker(self) -> asyncio.Event:
        """An event set whenever something is appended."""
        waker = asyncio.Event()
        self._wakers.add(waker)
        return waker

    def drop_waker(self, waker: asyncio.Event) -> None:
        self._wakers.discard(waker)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Appends given this transaction land together when it ends without an error.
        One transaction at a time, as rows locked in PostgreSQL would serialise them."""
        async with self._lock:
            tx = Transaction()
            yield tx
            self._commit(tx.appends)
