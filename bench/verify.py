"""Hash-chain verification rate over a log of real, chained events.

    python -m bench.verify [--events 1000000] [--per-stream 1000] [--append 500] [--runs 3]

Fills a scratch database with ``--events`` events through EventStore.append (``--append``
events per append, ``--per-stream`` events per stream, several appends in flight), so every
hash is the store's own. Then times ``verify`` over the whole log ``--runs`` times, and once
more with a timeline projection table holding every position, so the deleted-row anti-join
is included. Each run must find the log intact.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime

import msgspec

from bench.common import machine, scratch_database, server_url
from turnlog.projections.timeline import Timeline
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.verify import Report, verify
from turnlog.services.app.log.records import NewEvent
from turnlog.services.bootstrap import aio

WRITERS = 8


def events(stream: int, first: int, count: int) -> list[NewEvent]:
    """Chat-like events: a short JSON payload, an actor and a correlation id."""
    now = datetime.now(UTC)
    return [
        NewEvent(
            type="session.reply_sent" if n % 2 else "session.message_received",
            schema_version=1,
            payload=msgspec.json.encode({"text": f"message {n} of conversation {stream}"}),
            recorded_at=now,
            correlation_id=f"m-{stream}-{n // 2}",
            causation_id=f"m-{stream}-{n - 1}" if n % 2 else None,
            actor="app" if n % 2 else f"user:u{stream % 97}",
        )
        for n in range(first, first + count)
    ]


async def fill(store: EventStore, total: int, per_stream: int, size: int) -> None:
    streams = range(-(-total // per_stream))
    queue: asyncio.Queue[int] = asyncio.Queue()
    for s in streams:
        queue.put_nowait(s)
    done = 0

    async def writer() -> None:
        nonlocal done
        while not queue.empty():
            s = queue.get_nowait()
            count = min(per_stream, total - s * per_stream)
            for first in range(0, count, size):
                n = min(size, count - first)
                await store.append(f"bench-{s:06d}", first, events(s, first + 1, n))
                done += n
                if done % 100_000 < n:
                    print(f"  filled {done:,} events", flush=True)

    await asyncio.gather(*(writer() for _ in range(WRITERS)))


async def timed(store: EventStore, expected: int) -> Report:
    report = await verify(store)
    assert report.broken == [], report.broken[:5]
    assert report.events == expected, (report.events, expected)
    return report


async def main(total: int, per_stream: int, size: int, runs: int) -> None:
    with server_url() as url:
        async with scratch_database(url) as db:
            store = await EventStore.connect(db, min_size=WRITERS, max_size=WRITERS)
            try:
                started = time.perf_counter()
                await fill(store, total, per_stream, size)
                print(f"  fill: {total / (time.perf_counter() - started):,.0f} events/s")
                await store.pool.execute("VACUUM ANALYZE turnlog_events")
                rates = []
                for run in range(runs):
                    report = await timed(store, total)
                    rates.append(report.events / report.seconds)
                    print(
                        f"  run {run + 1}: {report.streams:,} streams, {report.events:,} events"
                        f" in {report.seconds:.2f} s = {rates[-1]:,.0f} events/s",
                        flush=True,
                    )
                for ddl in Timeline.ddl:
                    await store.pool.execute(ddl.replace("{s}.", ""))
                await store.pool.execute(
                    "INSERT INTO turnlog_timeline SELECT position, stream_id, version, type,"
                    " recorded_at, actor, correlation_id, causation_id FROM turnlog_events"
                )
                await store.pool.execute("VACUUM ANALYZE turnlog_timeline")
                with_timeline = await timed(store, total)
            finally:
                await store.close()
    print()
    print(f"verify over {total:,} events — {machine()}")
    print(f"  median of {runs} runs: {statistics.median(rates):,.0f} events/s")
    print(
        f"  with the timeline anti-join: {with_timeline.events / with_timeline.seconds:,.0f}"
        f" events/s ({with_timeline.seconds:.2f} s)"
    )
    print("target: >= 100,000 events/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--per-stream", type=int, default=1000)
    parser.add_argument("--append", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    aio.run(main(args.events, args.per_stream, args.append, args.runs))
