"""Projections: rebuild rate, live lag, and query latency.

    python -m bench.projections [--events 1000000] [--documents 100000] [--seconds 10]

1. Fills a scratch database with ``--events`` events: sessions of 20 events each (start,
   then turns of message, data, block, reply, completion) and ``--documents`` inserted
   documents, written straight into the log with SQL (their hash chains are not real:
   projections do not read them).
2. Rebuilds every projection from position 0 (the rebuild rate), then each alone.
3. Runs the projector live while a writer appends 1,000 events/s through the event store
   for ``--seconds``: the lag from an event's commit to its projection's commit.
4. Times a history page (50 messages) of random sessions and a collection find over the
   documents (a filter on an indexed field, 20 results).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import random
import statistics
import time
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime

from bench.common import machine, scratch_database, server_url, table
from turnlog.contracts.query import HistoryItem, HistoryPage
from turnlog.projections.catalog import PROJECTIONS
from turnlog.services.adapters.postgres.documents import CollectionStore, Place
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.projector.rebuild import rebuild
from turnlog.services.adapters.postgres.projector.runner import Projector
from turnlog.services.adapters.postgres.queries import QueryService
from turnlog.services.app.access import Principal
from turnlog.services.app.log.records import NewEvent
from turnlog.services.bootstrap import aio

PER_SESSION = 20
FILL = """
INSERT INTO turnlog_events (stream_id, version, type, schema_version, payload, recorded_at,
                            correlation_id, causation_id, actor, prev_hash, hash)
SELECT s.sid, v,
       CASE WHEN v = 1 THEN 'session.started'
            ELSE (ARRAY['session.message_received', 'session.data_set', 'session.block_shown',
                        'session.reply_sent', 'session.turn_completed'])[(v - 2) % 5 + 1] END,
       1,
       convert_to(CASE
         WHEN v = 1 THEN format('{"app":"bench","user":{"id":"u%s"},"channel":{"type":"chat"}}', s.n % 1000)
         WHEN (v - 2) % 5 = 0 THEN format('{"message_id":"m%s-%s","text":"message %s of a conversation"}', s.n, v, v)
         WHEN (v - 2) % 5 = 1 THEN format('{"key":"k%s","value":{"turn":%s,"note":"some state"}}', v % 3, v)
         WHEN (v - 2) % 5 = 2 THEN format('{"block_id":"b%s","block_type":"card","payload":{"v":%s}}', v % 2, v)
         WHEN (v - 2) % 5 = 3 THEN format('{"text":"reply %s, with a few more words in it"}', v)
         ELSE format('{"message_id":"m%s-%s","outcome":"ok","duration_ms":1.5}', s.n, v - 4) END, 'UTF8'),
       now(), format('m%s-%s', s.n, v), format('m%s-%s', s.n, v), 'app:bench', '\\x00', '\\x00'
  FROM (SELECT n, md5(n::text)::uuid::text AS sid FROM generate_series($1::int, $2::int) n) s,
       generate_series(1, 20) v
 ORDER BY s.n, v
"""  # noqa: E501
DOCS = """
INSERT INTO turnlog_events (stream_id, version, type, schema_version, payload, recorded_at,
                            correlation_id, causation_id, actor, prev_hash, hash)
SELECT md5('doc' || n)::uuid::text, 1, 'document.inserted', 1,
       convert_to(format('{"app":"bench","collection":"items","scope":"app","owner":"",'
                         '"doc_id":"d%s","document":{"_id":"d%s","n":%s,"tag":"t%s","text":"item %s"}}',
                         n, n, n, n % 1000, n), 'UTF8'),
       now(), NULL, NULL, 'app:bench', '\\x00', '\\x00'
  FROM generate_series($1::int, $2::int) n
"""  # noqa: E501


def session_id(n: int) -> str:
    """The stream id FILL gives session ``n``: md5(n) as a UUID."""
    return str(uuid.UUID(hashlib.md5(str(n).encode()).hexdigest()))


def event(n: int) -> NewEvent:
    return NewEvent(
        type="bench.ticked",
        schema_version=1,
        payload=b'{"n":%d}' % n,
        recorded_at=datetime.now(UTC),
        actor="bench",
    )


async def fill(store: EventStore, events: int, documents: int) -> None:
    sessions = max(1, (events - documents) // PER_SESSION)
    step = 10_000
    started = time.perf_counter()
    for first in range(1, sessions + 1, step):
        await store.pool.execute(FILL, first, min(first + step - 1, sessions))
        print(f"\r  filling: {first * PER_SESSION:,} session events", end="", flush=True)
    await store.pool.execute(DOCS, 1, documents)
    total = await store.last_position()
    print(f"\r  filled {total:,} events in {time.perf_counter() - started:.0f} s" + " " * 20)


async def rebuild_rates(store: EventStore) -> list[list[str]]:
    rows = []
    for name, chosen in [("all six", list(PROJECTIONS.values()))] + [
        (p.name, [p]) for p in PROJECTIONS.values()
    ]:
        started = time.perf_counter()
        position = await rebuild(store, chosen, batch_size=5000)
        elapsed = time.perf_counter() - started
        rows.append([name, f"{position:,}", f"{elapsed:.1f}", f"{position / elapsed:,.0f}"])
        print(f"  rebuilt {name}: {position / elapsed:,.0f} events/s", flush=True)
    return rows


async def live_lag(store: EventStore, url: str, seconds: float) -> list[float]:
    projector_store = await EventStore.connect(url, min_size=1, max_size=8)
    projector = Projector(projector_store, list(PROJECTIONS.values()))
    task = asyncio.create_task(projector.run())
    await projector.ready.wait()
    await projector.caught_up(timeout=600)
    projector.lags.clear()
    rate, per_append = 1000, 5
    interval = per_append / rate
    due = time.perf_counter()
    end = due + seconds
    n = 0
    while time.perf_counter() < end:
        due += interval
        await store.append(
            f"lag-{n % 50}", n // 50 * per_append, [event(n) for _ in range(per_append)]
        )
        n += 1
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
    await projector.caught_up()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await projector_store.close()
    return [lag * 1000 for lag in projector.lags]


async def latencies(store: EventStore, documents: int, sessions: int) -> list[list[str]]:
    service = QueryService(store.pool)
    admin = Principal("read")
    collections = CollectionStore(store)
    await collections.setup()
    await collections.create_index("bench", "items", ["tag"])
    await store.pool.execute("ANALYZE")
    place = Place("bench", "items", "app", "")
    rng = random.Random(3)
    rows = []
    for what, call in (
        (
            "history page (50)",
            lambda: _items(
                service.history(admin, session_id(rng.randrange(1, sessions)), limit=50)
            ),
        ),
        (
            f"collection find over {documents:,} documents (20)",
            lambda: collections.find(place, {"tag": f"t{rng.randrange(1000)}"}, limit=20),
        ),
    ):
        samples = []
        for _ in range(2000):
            started = time.perf_counter()
            found = await call()
            samples.append((time.perf_counter() - started) * 1000)
            assert found, f"{what}: nothing found"  # an empty answer would measure nothing
        q = statistics.quantiles(samples, n=100)
        rows.append([what, f"{q[49]:.2f}", f"{q[98]:.2f}"])
    return rows


async def _items(page: Awaitable[HistoryPage]) -> list[HistoryItem]:
    return (await page).items


async def main(events: int, documents: int, seconds: float) -> None:
    with server_url() as url:
        async with scratch_database(url) as db:
            store = await EventStore.connect(db, min_size=2, max_size=10)
            try:
                await fill(store, events, documents)
                rebuilt = await rebuild_rates(store)
                lags = await live_lag(store, db, seconds)
                queries = await latencies(store, documents, (events - documents) // PER_SESSION)
            finally:
                await store.close()
    q = statistics.quantiles(lags, n=100)
    print()
    print(f"projections — {machine()}")
    print(table(["rebuild", "events", "seconds", "events/s"], rebuilt))
    print()
    print(
        f"live lag at 1,000 events/s for {seconds:.0f} s: p50 {q[49]:.1f} ms,"
        f" p99 {q[98]:.1f} ms, max {max(lags):.1f} ms ({len(lags)} batches)"
    )
    print()
    print(table(["query", "p50 ms", "p99 ms"], queries))
    print("targets: rebuild >= 50,000 events/s; lag p99 < 100 ms; history page p99 < 10 ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    aio.run(main(args.events, args.documents, args.seconds))
