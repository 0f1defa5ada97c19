"""Following the global log: no event is ever skipped, even when writers commit out of
position order or roll back, and followers sleep until an append is announced."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

from tests.helpers import said as ev
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.follow import GlobalReader, follow


async def committed_positions(store: EventStore) -> list[int]:
    rows = await store.pool.fetch("SELECT position FROM turnlog_events ORDER BY position")
    return [r[0] for r in rows]


async def test_reader_holds_at_an_uncommitted_lower_position(store: EventStore) -> None:
    reader = GlobalReader(store)
    async with store.pool.acquire() as slow:
        tx = slow.transaction()
        await tx.start()
        (early,) = await store.append("slow", 0, [ev("early")], connection=slow)
        (late,) = await store.append("fast", 0, [ev("late")])
        assert early.position < late.position
        assert await reader.read() == []  # position `late` is visible, but not yet safe
        assert reader.waiting_on_hole
        await tx.commit()
    batch = await reader.read()
    assert [r.position for r in batch] == [early.position, late.position]
    assert not reader.waiting_on_hole


async def test_reader_skips_the_hole_of_a_rolled_back_append(store: EventStore) -> None:
    reader = GlobalReader(store)
    async with store.pool.acquire() as doomed:
        tx = doomed.transaction()
        await tx.start()
        await store.append("doomed", 0, [ev("never")], connection=doomed)
        (kept,) = await store.append("kept", 0, [ev("kept")])
        assert await reader.read() == []
        await tx.rollback()
    assert [r.position for r in await reader.read()] == [kept.position]
    assert reader.position == kept.position


async def test_follower_never_misses_events_under_eight_concurrent_writers(
    store: EventStore,
) -> None:
    """8 writers, 150 rounds each, random commit delays and 10% rollbacks, plus 4 writers
    whose appends are group-committed, while a follower reads "after position P" in a
    loop: it sees every committed event, once, in position order."""
    rng = random.Random(20261121)
    writers, rounds = 8, 150
    seen: list[int] = []
    reader = GlobalReader(store, batch_size=50)

    async def writer(w: int) -> None:
        version = 0
        for r in range(rounds):
            size = rng.randint(1, 5)
            async with store.pool.acquire() as conn:
                tx = conn.transaction()
                await tx.start()
                await store.append(f"w{w}", version, [ev(f"{w}.{r}")] * size, connection=conn)
                await conn.execute("SELECT pg_sleep($1)", rng.random() * 0.004)
                if rng.random() < 0.1:
                    await tx.rollback()
                    continue
                await tx.commit()
                version += size
            store.announce()

    target = [1 << 62]
    caught_up = asyncio.Event()

    async def follower() -> None:
        async with contextlib.aclosing(follow(reader, idle_timeout=1.0)) as batches:
            async for batch in batches:
                seen.extend(r.position for r in batch)
                if reader.position >= target[0]:
                    caught_up.set()

    async def batched_writer(w: int) -> None:
        for r in range(rounds):
            await store.append(f"b{w}", r, [ev(f"b{w}.{r}")])

    following = asyncio.create_task(follower())
    await asyncio.gather(
        *(writer(w) for w in range(writers)), *(batched_writer(w) for w in range(4))
    )
    committed = await committed_positions(store)
    target[0] = committed[-1]
    if reader.position >= target[0]:
        caught_up.set()
    await asyncio.wait_for(caught_up.wait(), timeout=30)
    following.cancel()
    await asyncio.gather(following, return_exceptions=True)

    assert seen == committed  # every committed event, once, in position order
    assert len(committed) > writers * rounds  # batches of 1..5, minus rollbacks
    assert reader.held_at_holes > 0  # the run did commit out of order


async def test_follower_sleeps_until_another_process_appends(
    store: EventStore, database_url: str
) -> None:
    other = await EventStore.connect(database_url, min_size=1, max_size=2)
    reader = GlobalReader(store)
    received: asyncio.Queue[list[int]] = asyncio.Queue()

    async def run() -> None:
        async with contextlib.aclosing(follow(reader, idle_timeout=60)) as batches:
            async for batch in batches:
                await received.put([r.position for r in batch])

    task = asyncio.create_task(run())
    try:
        await asyncio.sleep(0.5)
        reads_while_idle = reader.reads
        await asyncio.sleep(1.0)
        assert reader.reads == reads_while_idle  # no polling while nothing happens
        started = time.monotonic()
        recorded = await other.append("s1", 0, [ev("ping")])
        positions = await asyncio.wait_for(received.get(), timeout=5)
        assert positions == [recorded[0].position]
        assert time.monotonic() - started < 5  # woken by NOTIFY, not by the 60 s timeout
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await other.close()
