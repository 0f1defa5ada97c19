"""Concurrent appends share transactions (group commit) without sharing their fates."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from tests.helpers import said as ev
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.app.log import hashing
from turnlog.services.app.log.errors import ConcurrencyConflict


async def transactions(store: EventStore) -> int:
    return int(
        await store.pool.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
    )


async def test_concurrent_appends_to_many_streams_commit_together(store: EventStore) -> None:
    await asyncio.gather(*(store.append(f"s{i}", 0, [ev("first")]) for i in range(100)))
    await asyncio.sleep(0.6)  # let the statistics collector catch up
    before = await transactions(store)
    results = await asyncio.gather(
        *(store.append(f"s{i}", 1, [ev(f"a{i}"), ev(f"b{i}")]) for i in range(100))
    )
    await asyncio.sleep(0.6)
    used = await transactions(store) - before
    assert used < 50, f"{used} transactions for 100 concurrent appends"
    for i, records in enumerate(results):
        assert [r.version for r in records] == [2, 3]
        stored = await store.read_stream(f"s{i}")
        assert stored[1:] == records and hashing.first_broken(stored) is None


async def test_a_conflict_in_a_batch_fails_only_its_own_append(store: EventStore) -> None:
    await store.append("busy", 0, [ev("x"), ev("y")])
    outcomes = await asyncio.gather(
        store.append("fresh-1", 0, [ev("a")]),
        store.append("busy", 1, [ev("stale")]),
        store.append("fresh-2", 0, [ev("b")]),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], ConcurrencyConflict) and outcomes[1].actual == 2
    assert [r.version for r in outcomes[0]] == [1]  # type: ignore[union-attr]
    assert [r.version for r in outcomes[2]] == [1]  # type: ignore[union-attr]
    assert [r.version for r in await store.read_stream("busy")] == [1, 2]


async def test_queued_appends_to_one_stream_go_in_order(store: EventStore) -> None:
    first = asyncio.create_task(store.append("one", 0, [ev("a")]))
    second = asyncio.create_task(store.append("one", 1, [ev("b")]))
    third = asyncio.create_task(store.append("one", 1, [ev("c")]))
    assert [r.version for r in await first] == [1]
    assert [r.version for r in await second] == [2]
    with pytest.raises(ConcurrencyConflict):
        await third
    assert hashing.first_broken(await store.read_stream("one")) is None


async def test_a_race_with_another_process_still_gives_each_append_its_outcome(
    store: EventStore, database_url: str
) -> None:
    other = await EventStore.connect(database_url, min_size=1, max_size=2)
    try:
        async with other.pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            await other.append("contested", 0, [ev("theirs")], connection=conn)
            ours = asyncio.gather(
                store.append("contested", 0, [ev("ours")]),
                store.append("bystander", 0, [ev("innocent")]),
                return_exceptions=True,
            )
            await asyncio.sleep(0.3)  # our batch is now blocked on their uncommitted row
            await tx.commit()
            contested, bystander = await ours
        assert isinstance(contested, ConcurrencyConflict) and contested.actual == 1
        assert not isinstance(bystander, BaseException)
        assert [r.version for r in bystander] == [1]
        (theirs,) = await store.read_stream("contested")
        assert theirs.payload == msgspec.json.encode({"text": "theirs"})
    finally:
        await other.close()


async def test_a_batch_cut_off_mid_operation_is_retried_append_by_append(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection cut in the middle of a batch (asyncpg's InternalClientError, as a
    PostgreSQL restart can leave it) retries each append alone; none is left waiting."""
    import asyncpg

    from turnlog.services.adapters.postgres.group_commit import GroupCommit

    failed: list[int] = []
    batch = GroupCommit._append_prepared

    async def cut_once(self: GroupCommit, prepared: list) -> None:  # type: ignore[type-arg]
        if not failed:
            failed.append(len(prepared))
            raise asyncpg.exceptions.InternalClientError("cannot switch to state 12")
        await batch(self, prepared)

    monkeypatch.setattr(GroupCommit, "_append_prepared", cut_once)
    async with asyncio.timeout(20):
        results = await asyncio.gather(*(store.append(f"c{i}", 0, [ev("a")]) for i in range(30)))
    assert failed and failed[0] > 1  # a batch was cut, not a lone append
    assert all([r.version for r in records] == [1] for records in results)


async def test_an_unexpected_failure_of_a_batch_answers_every_append(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from turnlog.services.adapters.postgres.group_commit import GroupCommit

    async def broken(self: GroupCommit, prepared: list) -> None:  # type: ignore[type-arg]
        raise RuntimeError("a bug in the batch path")

    monkeypatch.setattr(GroupCommit, "_append_prepared", broken)
    async with asyncio.timeout(20):
        outcomes = await asyncio.gather(
            *(store.append(f"u{i}", 0, [ev("a")]) for i in range(30)), return_exceptions=True
        )
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert errors and all(isinstance(e, RuntimeError) for e in errors)  # batched ones: the bug
    assert len(errors) < 30  # the first went straight to the database and succeeded
