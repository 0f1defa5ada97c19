"""Verifying the log on a real PostgreSQL: an intact log verifies clean, and each kind of
tampering (made with the append-only triggers disabled) is named at the exact stream,
version and position it happened."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec

from tests.helpers import said
from turnlog.projections.catalog import PROJECTIONS
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.projector.runner import Projector
from turnlog.services.adapters.postgres.verify import Broken, verify
from turnlog.services.app.log.records import NewEvent


async def fill(store: EventStore, sizes: dict[str, int]) -> None:
    """Streams of ``sizes[stream]`` events each, appended two at a time."""
    for stream, size in sizes.items():
        for first in range(0, size, 2):
            count = min(2, size - first)
            await store.append(stream, first, [said(f"{stream} {first + n}") for n in range(count)])


async def tamper(store: EventStore, sql: str, *args: Any) -> None:
    """Run ``sql`` on the log with its append-only triggers disabled, as an intruder with
    superuser rights would."""
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE turnlog_events DISABLE TRIGGER USER")
        await conn.execute(sql, *args)
        await conn.execute("ALTER TABLE turnlog_events ENABLE TRIGGER USER")


async def position(store: EventStore, stream: str, version: int) -> int:
    found: int = await store.pool.fetchval(
        "SELECT position FROM turnlog_events WHERE stream_id = $1 AND version = $2",
        stream,
        version,
    )
    return found


def found(broken: list[Broken]) -> list[tuple[str, int, int | None, str]]:
    return [(b.stream_id, b.version, b.position, b.reason) for b in broken]


async def test_an_intact_log_verifies_clean_with_counts_and_progress(store: EventStore) -> None:
    await fill(store, {"a": 5, "b": 3, "c": 1})
    # headers the canonical encoding must reproduce exactly: no correlation, a causation,
    # non-ASCII text, and a timestamp given in another zone than UTC
    odd = NewEvent(
        type="test.sagt",
        schema_version=3,
        payload=msgspec.json.encode({"text": 'grüß dich \u2028 "quoted"\n'}),
        recorded_at=datetime(2024, 2, 29, 23, 59, 59, tzinfo=timezone(timedelta(hours=5))),
        causation_id="cause-ß",
        actor=None,
    )
    await store.append("d", 0, [odd, said("x")])
    calls: list[tuple[int, int]] = []

    report = await verify(store, progress=lambda done, total: calls.append((done, total)), batch=4)

    assert (report.streams, report.events, report.broken) == (4, 11, [])
    assert report.seconds > 0
    assert calls == [(4, 11), (8, 11), (11, 11)]
    one = await verify(store, "a")
    assert (one.streams, one.events, one.broken) == (1, 5, [])
    none = await verify(store, "no-such-stream")
    assert (none.streams, none.events, none.broken) == (0, 0, [])


async def test_an_altered_event_is_named_at_its_version(store: EventStore) -> None:
    await fill(store, {"a": 5, "b": 5, "c": 5})
    where = await position(store, "b", 3)
    await tamper(
        store,
        "UPDATE turnlog_events SET payload = $1 WHERE stream_id = 'b' AND version = 3",
        msgspec.json.encode({"text": "forged"}),
    )

    report = await verify(store)

    assert (report.streams, report.events) == (3, 15)
    assert found(report.broken) == [("b", 3, where, "altered")]
    assert found((await verify(store, "b")).broken) == [("b", 3, where, "altered")]
    assert (await verify(store, "a")).broken == []


async def test_every_hashed_field_is_covered(store: EventStore) -> None:
    changes = {
        "s-type": "type = 'test.forged'",
        "s-schema": "schema_version = 9",
        "s-time": "recorded_at = recorded_at + interval '1 microsecond'",
        "s-corr": "correlation_id = 'corr-2'",
        "s-cause": "causation_id = 'c'",
        "s-actor": "actor = NULL",
        "s-hash": "hash = sha256(hash)",
    }
    await fill(store, dict.fromkeys(changes, 4))
    for stream, change in changes.items():
        await tamper(
            store,
            f"UPDATE turnlog_events SET {change} WHERE stream_id = $1 AND version = 2",
            stream,
        )

    report = await verify(store)

    assert [(b.stream_id, b.version, b.reason) for b in report.broken] == [
        (stream, 2, "altered") for stream in sorted(changes)
    ]


async def test_a_deleted_middle_event_is_missing(store: EventStore) -> None:
    await fill(store, {"a": 5, "b": 5, "c": 5})
    after = await position(store, "b", 4)
    await tamper(store, "DELETE FROM turnlog_events WHERE stream_id = 'b' AND version = 3")

    report = await verify(store)

    assert (report.streams, report.events) == (3, 14)
    assert found(report.broken) == [("b", 3, None, "missing")]
    assert report.broken[0].detail == (
        f"version 3 is absent (deleted): the stream jumps from version 2 to version 4"
        f" (position {after})"
    )


async def test_deleted_first_events_are_missing(store: EventStore) -> None:
    await fill(store, {"a": 5})
    await tamper(store, "DELETE FROM turnlog_events WHERE stream_id = 'a' AND version <= 2")

    (broken,) = (await verify(store)).broken

    assert (broken.version, broken.position, broken.reason) == (1, None, "missing")
    assert "versions 1..2 are absent" in broken.detail
    assert "from the stream's start to version 3" in broken.detail


async def test_swapped_events_are_out_of_order(store: EventStore) -> None:
    await fill(store, {"a": 5, "b": 5})
    moved = await position(store, "b", 3)
    for change in ("1000 WHERE version = 2", "2 WHERE version = 3", "3 WHERE version = 1000"):
        await tamper(store, f"UPDATE turnlog_events SET version = {change} AND stream_id = 'b'")

    report = await verify(store)

    assert found(report.broken) == [("b", 2, moved, "out_of_order")]


async def test_a_removed_and_renumbered_event_is_out_of_order(store: EventStore) -> None:
    await fill(store, {"a": 5})
    shifted = await position(store, "a", 4)
    await tamper(store, "DELETE FROM turnlog_events WHERE stream_id = 'a' AND version = 3")
    for version in (4, 5):
        await tamper(
            store,
            "UPDATE turnlog_events SET version = $1 - 1 WHERE stream_id = 'a' AND version = $1",
            version,
        )

    assert found((await verify(store)).broken) == [("a", 3, shifted, "out_of_order")]


async def project_timeline(store: EventStore) -> None:
    """Run the timeline projection until it has recorded the whole log."""
    projector = Projector(store, [PROJECTIONS["timeline"]])
    task = asyncio.create_task(projector.run())
    try:
        async with asyncio.timeout(10):
            await projector.ready.wait()
        await projector.caught_up()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_deleted_last_event_shows_against_the_timeline(store: EventStore) -> None:
    await fill(store, {"a": 5, "b": 5})
    await project_timeline(store)
    assert (await verify(store)).broken == []
    last = await position(store, "b", 5)
    await tamper(store, "DELETE FROM turnlog_events WHERE stream_id = 'b' AND version = 5")

    report = await verify(store)

    assert (report.streams, report.events) == (2, 9)
    assert found(report.broken) == [("b", 5, last, "deleted_after_projection")]
    assert found((await verify(store, "b")).broken) == [("b", 5, last, "deleted_after_projection")]
    assert (await verify(store, "a")).broken == []


async def test_the_timeline_names_a_deleted_middle_event_and_counts_the_rest(
    store: EventStore,
) -> None:
    await fill(store, {"a": 5, "only": 1})
    await project_timeline(store)
    gone, alone = await position(store, "a", 2), await position(store, "only", 1)
    await tamper(store, "DELETE FROM turnlog_events WHERE stream_id = 'a' AND version IN (2, 5)")
    await tamper(store, "DELETE FROM turnlog_events WHERE stream_id = 'only'")

    report = await verify(store)

    assert report.streams == 1  # "only" has no event left to read
    assert found(report.broken) == [
        ("a", 2, gone, "deleted_after_projection"),
        ("only", 1, alone, "deleted_after_projection"),
    ]
    assert "1 more such position(s)" in report.broken[0].detail
