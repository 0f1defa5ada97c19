"""Verifying the log: recompute every stream's hash chain and compare it with what is stored.

The whole log is read once, ``ORDER BY stream_id, version``, through a server-side cursor
in a read-only REPEATABLE READ transaction, and checked batch by batch: memory stays
constant however long the log or any stream is. Per stream, the first event that breaks
the chain is reported:

- ``missing``: a version is absent (versions must run 1..n without gaps);
- ``out_of_order``: an event's ``prev_hash`` is not its predecessor's hash;
- ``altered``: an event's hash does not follow from its predecessor and its content.

The chain cannot show that a stream's last events were deleted. Where the timeline
projection exists, one anti-join also reports positions it recorded that the log no longer
has (``deleted_after_projection``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Literal

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.app.log import hashing
from turnlog.services.app.log.hashing import GENESIS

Reason = Literal["altered", "missing", "out_of_order", "deleted_after_projection"]

_COLUMNS = (
    "stream_id, version, position, type, schema_version, recorded_at, correlation_id,"
    " causation_id, actor, payload, prev_hash, hash"
)
_ALL = f"SELECT {_COLUMNS} FROM turnlog_events ORDER BY stream_id, version"
_ONE = f"SELECT {_COLUMNS} FROM turnlog_events WHERE stream_id = $1 ORDER BY version"
_COUNT_ALL = "SELECT count(*) FROM turnlog_events"
_COUNT_ONE = "SELECT count(*) FROM turnlog_events WHERE stream_id = $1"
_HAS_TIMELINE = "SELECT to_regclass('turnlog_timeline') IS NOT NULL"
# The first position of each stream the timeline recorded and the log lacks, with how many.
_DELETED = """
SELECT DISTINCT ON (t.stream_id) t.stream_id, t.version, t.position,
       count(*) OVER (PARTITION BY t.stream_id) AS absent
  FROM turnlog_timeline t
 WHERE ($1::text IS NULL OR t.stream_id = $1)
   AND NOT EXISTS (SELECT 1 FROM turnlog_events e WHERE e.position = t.position)
 ORDER BY t.stream_id, t.version
"""


class Broken(msgspec.Struct, frozen=True, kw_only=True):
    """The first event of a stream that fails verification. ``position`` is None for a
    version that is absent from the log."""

    stream_id: str
    version: int
    position: int | None
    reason: Reason
    detail: str


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """What a verification read (streams and events in the log) and what it found:
    the first broken event of each broken stream, ordered by stream_id (code points)."""

    streams: int
    events: int
    seconds: float
    broken: list[Broken]


class _Chain:
    """The hash chain being checked, fed rows in (stream_id, version) order; remembers only
    the current stream's next version and last hash."""

    def __init__(self) -> None:
        self.streams = 0
        self.events = 0
        self.broken: list[Broken] = []
        self._stream: str | None = None
        self._expected = 1
        self._prev = GENESIS
        self._done = False  # the current stream is already reported

    def feed(self, rows: Sequence[asyncpg.Record]) -> None:
        """Check ``rows``, the next ones of the log (a stream may continue from the last
        batch). A stream's later events are not checked once one is found broken."""
        stream, expected, prev, done = self._stream, self._expected, self._prev, self._done
        canonical, chain = hashing.canonical, hashing.chain
        for row in rows:
            sid, version, position, kind, sv, at, corr, caus, actor, payload, link, digest = row
            if sid != stream:
                stream, expected, prev, done = sid, 1, GENESIS, False
                self.streams += 1
            if done:
                continue
            if version != expected:
                done = True
                self.broken.append(_missing(sid, expected, version, position))
                continue
            if link != prev:
                done = True
                self.broken.append(_out_of_order(sid, version, position))
                continue
            body = canonical(sid, version, kind, sv, at, corr, caus, actor, payload)
            if chain(prev, body) != digest:
                done = True
                self.broken.append(
                    Broken(
                        stream_id=sid,
                        version=version,
                        position=position,
                        reason="altered",
                        detail=f"hash does not match the event's content (position {position})",
                    )
                )
                continue
            prev = digest
            expected += 1
        self.events += len(rows)
        self._stream, self._expected, self._prev, self._done = stream, expected, prev, done


def _missing(stream_id: str, expected: int, found: int, position: int) -> Broken:
    absent = (
        f"version {expected} is"
        if found == expected + 1
        else f"versions {expected}..{found - 1} are"
    )
    before = f"version {expected - 1}" if expected > 1 else "the stream's start"
    return Broken(
        stream_id=stream_id,
        version=expected,
        position=None,
        reason="missing",
        detail=f"{absent} absent (deleted): the stream jumps from {before} to version {found}"
        f" (position {position})",
    )


def _out_of_order(stream_id: str, version: int, position: int) -> Broken:
    return Broken(
        stream_id=stream_id,
        version=version,
        position=position,
        reason="out_of_order",
        detail=f"prev_hash is not version {version - 1}'s hash (position {position}):"
        " rows reordered or one removed",
    )


async def verify(
    store: EventStore,
    stream_id: str | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    batch: int = 5000,
) -> Report:
    """Verify the hash chain of one stream, or of every stream, in one consistent snapshot
    of the log; ``progress(events_done, total_events)`` is called after every batch."""
    started = time.perf_counter()
    chain = _Chain()
    async with (
        store.pool.acquire() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        args = () if stream_id is None else (stream_id,)
        total: int = await conn.fetchval(_COUNT_ALL if stream_id is None else _COUNT_ONE, *args)
        cursor = await conn.cursor(_ALL if stream_id is None else _ONE, *args)
        while rows := await cursor.fetch(batch):
            chain.feed(rows)
            if progress is not None:
                progress(chain.events, total)
        deleted = await _deleted(conn, stream_id)
    return Report(
        streams=chain.streams,
        events=chain.events,
        seconds=time.perf_counter() - started,
        broken=_merge(chain.broken, deleted),
    )


async def _deleted(conn: PoolConnectionProxy, stream_id: str | None) -> list[Broken]:
    """Per stream, the first position the timeline projection recorded that the log lacks
    (none if there is no timeline)."""
    if not await conn.fetchval(_HAS_TIMELINE):
        return []
    found: list[Broken] = []
    cursor = await conn.cursor(_DELETED, stream_id)
    while rows := await cursor.fetch(1000):
        for sid, version, position, absent in rows:
            more = f"; {absent - 1} more such position(s) in this stream" if absent > 1 else ""
            found.append(
                Broken(
                    stream_id=sid,
                    version=version,
                    position=position,
                    reason="deleted_after_projection",
                    detail=f"position {position} (version {version}) is in the timeline"
                    f" projection but absent from the log: deleted after it was projected{more}",
                )
            )
    return found


def _merge(chained: list[Broken], deleted: list[Broken]) -> list[Broken]:
    """One finding per stream, the lowest version; on a tie the timeline's, which names
    the deleted position."""
    first = {b.stream_id: b for b in chained}
    for b in deleted:
        seen = first.get(b.stream_id)
        if seen is None or b.version <= seen.version:
            first[b.stream_id] = b
    return [first[s] for s in sorted(first)]
