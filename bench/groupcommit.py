"""Raw inserts into ``raw_events``, group-committed the way ``EventStore.append`` is.

The same shape as the store's group commit, minus what makes it an event store (no
version check, no hash chain, no positions returned): an insert made while nothing is in
flight goes straight to the database; inserts arriving meanwhile queue up, and up to
``max_inflight`` flushers each take everything pending (at most ``batch_limit`` inserts),
write it with one multi-row INSERT … SELECT FROM unnest, one transaction, and wake each
waiter. The store also keeps a stream out of a batch while another batch writes it; a
session here waits for each insert before its next, so it has at most one pending.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench.append import RAW_INSERT

RAW_BATCH_INSERT = """
INSERT INTO raw_events (stream_id, version, type, schema_version, payload, recorded_at,
                        correlation_id, causation_id, actor, prev_hash, hash)
SELECT s, v, t, sv, p, r, c, ca, a, ph, h
  FROM unnest($1::text[], $2::integer[], $3::text[], $4::smallint[], $5::bytea[],
              $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::bytea[],
              $11::bytea[])
       AS u(s, v, t, sv, p, r, c, ca, a, ph, h)
"""


@dataclass
class _Pending:
    stream_id: str
    after: int  # the stream's version before these rows
    columns: list[list[Any]]  # RAW_INSERT's $3 … $11
    future: asyncio.Future[None]


class GroupCommit:
    """``insert`` of one session's rows; concurrent sessions' rows share transactions."""

    def __init__(self, pool: asyncpg.Pool, *, batch_limit: int, max_inflight: int) -> None:
        self.pool = pool
        self.batch_limit = batch_limit
        self.max_inflight = max_inflight
        self.batches = 0  # transactions sent by flushers
        self._queue: deque[_Pending] = deque()
        self._inflight = 0
        self._flushers: set[asyncio.Task[None]] = set()

    async def insert(self, stream_id: str, after: int, columns: list[list[Any]]) -> None:
        if self._inflight == 0 and not self._queue:
            self._inflight += 1
            try:
                await self.pool.execute(RAW_INSERT, stream_id, after, *columns)
            finally:
                self._inflight -= 1
                self._kick()
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(stream_id, after, columns, future))
        self._kick()
        await future

    async def close(self) -> None:
        if self._flushers:
            await asyncio.gather(*self._flushers, return_exceptions=True)

    def _kick(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue and self._inflight < self.max_inflight:
            self._inflight += 1
            task = loop.create_task(self._flush_queue())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)

    async def _flush_queue(self) -> None:
        try:
            while self._queue:
                count = min(len(self._queue), self.batch_limit)
                await self._flush([self._queue.popleft() for _ in range(count)])
        finally:
            self._inflight -= 1
            if self._queue and self._inflight == 0:
                self._kick()

    async def _flush(self, batch: list[_Pending]) -> None:
        flat: list[list[Any]] = [[] for _ in range(11)]
        for p in batch:
            count = len(p.columns[0])
            flat[0].extend([p.stream_id] * count)
            flat[1].extend(range(p.after + 1, p.after + count + 1))
            for column, values in zip(flat[2:], p.columns, strict=True):
                column.extend(values)
        self.batches += 1
        try:
            await self.pool.execute(RAW_BATCH_INSERT, *flat)
        except Exception as e:
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(e)
            return
        for p in batch:
            if not p.future.done():
                p.future.set_result(None)
