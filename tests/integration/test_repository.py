"""Sessions saved to and loaded from a real PostgreSQL, with and without snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from turnlog.contracts.events import ChannelRef, UserRef
from turnlog.domain.session import Session
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.app.log.errors import ConcurrencyConflict
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.sessions.repository import SessionNotFound, SessionRepository

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def state(session: Session) -> dict[str, Any]:
    return {k: v for k, v in vars(session).items() if k != "_pending_events"}


def new_session() -> Session:
    return Session.start(
        uuid4(),
        app="notes",
        user=UserRef(id="u1", email="u1@example.com"),
        channel=ChannelRef(type="terminal"),
        at=T0,
    )


def turn(session: Session, i: int) -> None:
    at = T0 + timedelta(seconds=i)
    session.receive_message(message_id=f"m{i}", text=f"remember {i}", at=at)
    session.notify("Thinking...", at=at)
    session.reply(f"noted {i}", at=at, streamed=i % 2 == 0)
    session.set_data("notes", [f"n{j}" for j in range(i % 7)], at=at)
    session.show_block("progress", "task", {"done": i}, at=at)
    session.complete_turn(outcome="ok", duration_ms=1.5, at=at)


async def test_saved_session_loads_back_equal(store: EventStore) -> None:
    repo = SessionRepository(store)
    session = new_session()
    for i in range(3):
        turn(session, i)
    session.end("closed", at=T0 + timedelta(minutes=5))
    recorded = await repo.save(session, Metadata(correlation_id="m0", actor="user:u1"))
    assert [r.type for r in recorded[:3]] == [
        "session.started",
        "session.message_received",
        "session.notified",
    ]
    assert {r.actor for r in recorded} == {"user:u1"}
    received = [r.correlation_id for r in recorded if r.type == "session.message_received"]
    assert received == ["m0", "m1", "m2"]  # each inbound message correlates with itself
    loaded = await repo.load(session.id)
    assert state(loaded) == state(session)
    assert loaded.ended and loaded.data == {"notes": ["n0", "n1"]}


async def test_snapshot_load_equals_full_replay(store: EventStore) -> None:
    repo = SessionRepository(store, snapshot_every=100)
    session = new_session()
    for i in range(340):  # 6 events a turn: 2,041 events, snapshots along the way
        turn(session, i)
        if i % 25 == 24:
            await repo.save(session)
    await repo.save(session)
    snapshot = await store.load_snapshot(str(session.id))
    assert snapshot is not None and 1900 <= snapshot.version <= session.version

    from_snapshot = await repo.load(session.id)
    replayed = await repo.load(session.id, use_snapshot=False)
    assert state(from_snapshot) == state(replayed) == state(session)
    assert from_snapshot.version == 2041

    turn(from_snapshot, 999)  # and it keeps working after a snapshot load
    await repo.save(from_snapshot)
    assert state(await repo.load(session.id)) == state(from_snapshot)


async def test_two_copies_of_a_session_cannot_both_save(store: EventStore) -> None:
    repo = SessionRepository(store)
    session = new_session()
    await repo.save(session)
    first, second = await repo.load(session.id), await repo.load(session.id)
    first.notify("one", at=T0)
    second.notify("two", at=T0)
    await repo.save(first)
    with pytest.raises(ConcurrencyConflict) as caught:
        await repo.save(second)
    assert caught.value.expected == 1 and caught.value.actual == 2


async def test_snapshots_of_another_schema_are_ignored(store: EventStore) -> None:
    repo = SessionRepository(store, snapshot_every=2)
    session = new_session()
    turn(session, 1)
    await repo.save(session)
    await store.pool.execute("UPDATE turnlog_snapshots SET schema_version = 99, state = 'junk'")
    assert state(await repo.load(session.id)) == state(session)


async def test_loading_an_unknown_session_raises(store: EventStore) -> None:
    missing = uuid4()
    with pytest.raises(SessionNotFound, match=str(missing)):
        await SessionRepository(store).load(missing)
