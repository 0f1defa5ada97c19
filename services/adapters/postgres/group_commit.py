"""Group commit: appends queued while others are in flight, committed together in batches."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC

import asyncpg
import msgspec

from turnlog.services.adapters.postgres.rows import APPEND_ROWS, TIPS, Row, document
from turnlog.services.adapters.postgres.tips import Tips
from turnlog.services.app.log import hashing
from turnlog.services.app.log.chain import Chained
from turnlog.services.app.log.errors import ConcurrencyConflict, Unavailable
from turnlog.services.app.log.records import NewEvent, RecordedEvent

Direct = Callable[[str, int, Sequence[NewEvent]], Awaitable[list[RecordedEvent]]]
"""One append made on its own: (stream id, expected version, events) -> records."""


@dataclass
class Request:
    stream_id: str
    expected: int
    events: Sequence[NewEvent]
    future: asyncio.Future[list[RecordedEvent]]


def _fail(request: Request, error: BaseException) -> None:
    if not request.future.done():
        request.future.set_exception(error)


class GroupCommit:
    """Appends batched per transaction. With nothing in flight an append goes straight to
    the database (``direct``); whatever arrives meanwhile queues up, and up to
    ``max_inflight`` flushers commit it in batches of at most ``batch_limit`` streams."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        tips: Tips,
        direct: Direct,
        announce: Callable[[], None],
        *,
        batch_limit: int,
        max_inflight: int,
    ) -> None:
        self.pool = pool
        self.tips = tips
        self._direct = direct
        self._announce = announce
        self.batch_limit = batch_limit
        self.max_inflight = max_inflight
        self._queue: deque[Request] = deque()
        self._inflight = 0
        self._busy: set[str] = set()
        self._flushers: set[asyncio.Task[None]] = set()
        self.batches = 0  # group-commit transactions sent, for metrics

    async def append(
        self, stream_id: str, expected_version: int, events: Sequence[NewEvent]
    ) -> list[RecordedEvent]:
        if self._inflight == 0 and not self._queue:
            # Nothing in flight: go straight to the database; whatever arrives meanwhile
            # queues up and is committed in batches right behind.
            self._inflight += 1
            self._busy.add(stream_id)
            try:
                return await self._direct(stream_id, expected_version, events)
            finally:
                self._busy.discard(stream_id)
                self._inflight -= 1
                self._kick()
        future: asyncio.Future[list[RecordedEvent]] = asyncio.get_running_loop().create_future()
        self._queue.append(Request(stream_id, expected_version, events, future))
        self._kick()
        return await future

    async def close(self) -> None:
        """Wait for the flushers at work."""
        if self._flushers:
            await asyncio.gather(*self._flushers, return_exceptions=True)

    def _kick(self) -> None:
        """Start batch flushers while there is queued work and room in flight."""
        loop = asyncio.get_running_loop()
        while self._queue and self._inflight < self.max_inflight:
            self._inflight += 1
            task = loop.create_task(self._flush_queue())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)

    async def _flush_queue(self) -> None:
        try:
            while batch := self._take_batch():
                try:
                    await self._flush(batch)
                finally:
                    self._busy.difference_update(r.stream_id for r in batch)
                    for request in batch:  # cut off (the store closing): answered anyway
                        _fail(request, Unavailable("the append was cut off; try it again"))
        finally:
            self._inflight -= 1
            if self._queue and self._inflight == 0:
                self._kick()

    def _take_batch(self) -> list[Request]:
        """Queued requests, oldest first, at most one per stream, none for a stream that
        another batch is writing, and ``batch_limit`` in all. Marks their streams busy."""
        batch: list[Request] = []
        later: list[Request] = []
        while self._queue and len(batch) < self.batch_limit:
            request = self._queue.popleft()
            if request.stream_id in self._busy:
                later.append(request)
            else:
                self._busy.add(request.stream_id)
                batch.append(request)
        self._queue.extendleft(reversed(later))
        return batch

    async def _flush(self, batch: list[Request]) -> None:
        try:
            await self._refresh_tips(batch)
            prepared: list[tuple[Request, Chained]] = []
            for request in batch:
                tip = self.tips.get(request.stream_id)
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
        except (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.exceptions.InternalClientError,
            OSError,
            msgspec.EncodeError,
        ):
            # A writer in another process raced one of these streams (or the connection
            # failed, even mid-operation, or an event cannot be encoded): retry each
            # request on its own, so each gets its own outcome.
            await asyncio.gather(*(self._retry_alone(r) for r in batch if not r.future.done()))
        except Exception as e:  # whatever else: each request is answered, never left waiting
            for request in batch:
                _fail(request, e)

    async def _append_prepared(self, prepared: list[tuple[Request, Chained]]) -> None:
        rows: list[Row] = []
        payloads: list[bytes] = []
        hashes: list[bytes] = []
        for index, (_, p) in enumerate(prepared, start=1):
            version = p.expected
            for e in p.events:
                version += 1
                at = e.recorded_at
                rows.append(
                    Row(
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
            APPEND_ROWS,
            [p.stream_id for _, p in prepared],
            [p.expected for _, p in prepared],
            [p.prev for _, p in prepared],
            document(rows),
            payloads,
            b"".join(hashes),
        )
        assert row is not None  # the function always returns one row
        conflicts, positions = row[0], row[1]
        taken = 0
        for (request, p), actual in zip(prepared, conflicts, strict=True):
            if actual is not None:
                self.tips.forget(p.stream_id)
                _fail(request, ConcurrencyConflict(p.stream_id, p.expected, actual))
                continue
            count = len(p.events)
            records = p.records(positions[taken : taken + count])
            taken += count
            self.tips.remember(p.stream_id, p.expected + count, p.hashes[-1])
            if not request.future.done():
                request.future.set_result(records)
        self._announce()

    async def _retry_alone(self, request: Request) -> None:
        try:
            records = await self._direct(request.stream_id, request.expected, request.events)
        except Exception as e:
            _fail(request, e)
        else:
            if not request.future.done():
                request.future.set_result(records)

    async def _refresh_tips(self, batch: list[Request]) -> None:
        """Read the last (version, hash) of every stream whose tip is not known at the
        expected version, in one query."""
        unknown = [
            r.stream_id
            for r in batch
            if r.expected > 0 and self.tips.version(r.stream_id) != r.expected
        ]
        if not unknown:
            return
        rows = await self.pool.fetch(TIPS, unknown)
        for stream_id in unknown:
            self.tips.forget(stream_id)
        for row in rows:
            self.tips.remember(row[0], row[1], row[2])
