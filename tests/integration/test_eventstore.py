"""The event store against a real PostgreSQL: appends, conflicts, the hash chain,
schema evolution and immutability."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import ClassVar

import asyncpg
import msgspec
import pytest

from tests.helpers import said as ev
from turnlog.contracts.events import EventPayload
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.migrations import MIGRATIONS, migrate
from turnlog.services.app.log import hashing
from turnlog.services.app.log.codec import EventCodec
from turnlog.services.app.log.errors import (
    ConcurrencyConflict,
    UnknownEventType,
    UnsupportedSchemaVersion,
)
from turnlog.services.app.log.records import NewEvent


async def test_append_then_read_back_in_order(store: EventStore) -> None:
    recorded = await store.append("s1", 0, [ev("a"), ev("b")])
    recorded += await store.append("s1", 2, [ev("c")])
    assert [r.version for r in recorded] == [1, 2, 3]
    assert recorded[0].position < recorded[1].position < recorded[2].position
    read = await store.read_stream("s1")
    assert read == recorded
    assert [msgspec.json.decode(r.payload)["text"] for r in read] == ["a", "b", "c"]
    assert read[0].correlation_id == "corr-1" and read[0].actor == "user:u1"
    assert await store.read_stream("s1", after_version=1, to_version=2) == recorded[1:2]


async def test_wrong_expected_version_raises_a_conflict_naming_both(store: EventStore) -> None:
    await store.append("s1", 0, [ev("a"), ev("b")])
    for expected in (0, 1, 5):
        with pytest.raises(ConcurrencyConflict) as caught:
            await store.append("s1", expected, [ev("x")])
        assert (caught.value.stream_id, caught.value.expected, caught.value.actual) == (
            "s1",
            expected,
            2,
        )
        assert f"expected version {expected}" in str(caught.value)
    assert [r.version for r in await store.read_stream("s1")] == [1, 2]


async def test_a_stale_writer_in_another_process_gets_a_conflict(
    store: EventStore, database_url: str
) -> None:
    other = await EventStore.connect(database_url, min_size=1, max_size=2)
    try:
        await store.append("s1", 0, [ev("a")])
        await other.append("s1", 1, [ev("b")])
        with pytest.raises(ConcurrencyConflict) as caught:
            await store.append("s1", 1, [ev("stale")])
        assert caught.value.actual == 2
    finally:
        await other.close()


async def test_racing_writers_at_one_version_cannot_fork_a_stream(store: EventStore) -> None:
    await store.append("s1", 0, [ev("start")])
    results = await asyncio.gather(
        *(store.append("s1", 1, [ev(f"w{i}"), ev(f"w{i}-2")]) for i in range(8)),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, ConcurrencyConflict) for r in results if r not in winners)
    assert [r.version for r in await store.read_stream("s1")] == [1, 2, 3]


async def test_hash_chain_links_every_event_of_a_stream(store: EventStore) -> None:
    for i in range(5):
        await store.append("s1", i * 2, [ev(f"{i}a"), ev(f"{i}b")])
    records = await store.read_stream("s1")
    assert records[0].prev_hash == hashing.GENESIS
    assert hashing.first_broken(records) is None


async def test_hash_chain_detects_an_altered_payload(store: EventStore) -> None:
    await store.append("s1", 0, [ev("a"), ev("b"), ev("c")])
    async with store.pool.acquire() as conn:
        await conn.execute("ALTER TABLE turnlog_events DISABLE TRIGGER USER")
        await conn.execute(
            "UPDATE turnlog_events SET payload = $1 WHERE stream_id = 's1' AND version = 2",
            msgspec.json.encode({"text": "forged"}),
        )
    assert hashing.first_broken(await store.read_stream("s1")).version == 2


async def test_the_log_refuses_update_and_delete(store: EventStore) -> None:
    await store.append("s1", 0, [ev("a")])
    for sql in (
        "UPDATE turnlog_events SET type = 'x'",
        "DELETE FROM turnlog_events",
        "TRUNCATE turnlog_events",
    ):
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await store.pool.execute(sql)
    assert len(await store.read_stream("s1")) == 1


async def test_migrations_are_idempotent(store: EventStore) -> None:
    async with store.pool.acquire() as conn:
        assert await migrate(conn) == []
        versions = await conn.fetch("SELECT version FROM turnlog_schema_migrations")
    assert sorted(r[0] for r in versions) == [v for v, _ in MIGRATIONS]


class Said(EventPayload, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "test.said"
    SCHEMA_VERSION: ClassVar[int] = 3
    words: list[str]
    loud: bool


async def test_upcasters_lift_old_schema_versions_on_read(store: EventStore) -> None:
    codec = EventCodec([Said])
    codec.register_upcaster("test.said", 1, lambda old: {"words": old["text"].split()})
    codec.register_upcaster("test.said", 2, lambda old: {**old, "loud": False})
    await store.append("s1", 0, [ev("hello old world", schema_version=1)])
    await store.append(
        "s1",
        1,
        [
            NewEvent(
                type="test.said",
                schema_version=3,
                recorded_at=datetime.now(UTC),
                payload=codec.encode(Said(words=["new"], loud=True)),
            )
        ],
    )
    first, second = await store.read_stream("s1")
    assert codec.decode(first.type, first.schema_version, first.payload) == Said(
        words=["hello", "old", "world"], loud=False
    )
    assert codec.decode(second.type, second.schema_version, second.payload) == Said(
        words=["new"], loud=True
    )


async def test_missing_upcaster_and_newer_versions_fail_loudly(store: EventStore) -> None:
    codec = EventCodec([Said])
    await store.append("s1", 0, [ev("old", schema_version=1), ev("future", schema_version=4)])
    old, future = await store.read_stream("s1")
    with pytest.raises(UnsupportedSchemaVersion, match="no upcaster from version 1 to 2"):
        codec.decode(old.type, old.schema_version, old.payload)
    with pytest.raises(UnsupportedSchemaVersion, match="newer code"):
        codec.decode(future.type, future.schema_version, future.payload)


async def test_unknown_event_type_raises_a_clear_error(store: EventStore) -> None:
    await store.append("s1", 0, [ev("x", type_name="test.mystery")])
    (record,) = await store.read_stream("s1")
    with pytest.raises(UnknownEventType, match=r"unknown event type 'test\.mystery'") as caught:
        EventCodec([Said]).decode(record.type, record.schema_version, record.payload)
    assert caught.value.type_name == "test.mystery"


async def test_empty_append_writes_nothing(store: EventStore) -> None:
    assert await store.append(str(uuid.uuid4()), 0, []) == []
    assert await store.last_position() == 0
