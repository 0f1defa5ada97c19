"""Projections on a real PostgreSQL: each read model from live events, and a rebuild
from position 0 that equals the live tables exactly."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

import turnlog
from tests.helpers import inbound as said
from turnlog.projections.catalog import PROJECTIONS
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.projector.check import check
from turnlog.services.adapters.postgres.projector.rebuild import rebuild
from turnlog.services.adapters.postgres.projector.runner import Projector
from turnlog.services.app.sessions.host import SessionHost
from turnlog.services.app.sessions.outbound import NoDelivery
from turnlog.services.bootstrap.wiring import Wiring

ALICE = turnlog.UserInfo(id="alice", email="alice@example.com", org_id="acme")
BOB = turnlog.UserInfo(id="bob")

ORDER = {
    "turnlog_sessions": "session_id",
    "turnlog_history": "session_id, version",
    "turnlog_session_data": "session_id, key",
    "turnlog_blocks": "session_id, block_id",
    "turnlog_documents": "stream_id",
    "turnlog_timeline": "position",
    "turnlog_tasks": "task_id",
}


def demo_app() -> turnlog.App:
    app = turnlog.App("demo")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        await session.notify("working")
        count = session.data.get("count", 0) + 1
        session.data["count"] = count
        session.data["last"] = msg.text
        if msg.text == "forget":
            del session.data["last"]
        await session.show(turnlog.Block("card", {"n": count}, id="status"))
        if count == 1:
            await session.show(turnlog.Block("card", {"hello": True}, id="welcome"))
        await session.reply(f"#{count}: {msg.text}")

    return app


@pytest.fixture
async def host(store: EventStore) -> AsyncIterator[SessionHost]:
    host = Wiring.postgres(store).host(demo_app(), NoDelivery())
    yield host
    await host.stop()


@pytest.fixture
async def projector(store: EventStore) -> AsyncIterator[Projector]:
    projector = Projector(store, list(PROJECTIONS.values()))
    task = asyncio.create_task(projector.run())
    async with asyncio.timeout(10):
        await projector.ready.wait()
    yield projector
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def conversation(host: SessionHost) -> tuple[uuid.UUID, uuid.UUID]:
    first = await host.handle(said("hi", ALICE))
    await host.handle(said("again", ALICE, first.session_id))
    await host.handle(said("forget", ALICE, first.session_id))
    other = await host.handle(said("hello", BOB))
    await host.close(other.session_id, reason="done")
    return first.session_id, other.session_id


async def checksums(store: EventStore) -> dict[str, str]:
    out = {}
    for table, order in ORDER.items():
        out[table] = await store.pool.fetchval(
            f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY {order}), '')) FROM {table} t"
        )
    return out


async def rows(store: EventStore, sql: str, *args: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in await store.pool.fetch(sql, *args)]


async def test_sessions_list_counts_and_ends(
    host: SessionHost, projector: Projector, store: EventStore
) -> None:
    alice, bob = await conversation(host)
    await projector.caught_up()
    got = {r["session_id"]: r for r in await rows(store, "SELECT * FROM turnlog_sessions")}
    assert got[str(alice)]["user_id"] == "alice"
    assert got[str(alice)]["user_email"] == "alice@example.com"
    assert got[str(alice)]["org_id"] == "acme"
    assert got[str(alice)]["channel"] == "test"
    assert (got[str(alice)]["message_count"], got[str(alice)]["reply_count"]) == (3, 3)
    assert got[str(alice)]["ended_at"] is None
    assert got[str(bob)]["end_reason"] == "done" and got[str(bob)]["ended_at"] is not None
    assert got[str(bob)]["last_activity"] == got[str(bob)]["ended_at"]


async def test_history_holds_messages_in_and_out_in_order(
    host: SessionHost, projector: Projector, store: EventStore
) -> None:
    alice, _ = await conversation(host)
    await projector.caught_up()
    history = await rows(
        store,
        "SELECT direction, kind, text FROM turnlog_history WHERE session_id = $1 ORDER BY version",
        str(alice),
    )
    assert [(h["direction"], h["kind"], h["text"]) for h in history] == [
        ("in", "message", "hi"),
        ("out", "notification", "working"),
        ("out", "reply", "#1: hi"),
        ("in", "message", "again"),
        ("out", "notification", "working"),
        ("out", "reply", "#2: again"),
        ("in", "message", "forget"),
        ("out", "notification", "working"),
        ("out", "reply", "#3: forget"),
    ]


async def test_data_and_blocks_hold_the_current_state(
    host: SessionHost, projector: Projector, store: EventStore
) -> None:
    alice, _ = await conversation(host)
    await projector.caught_up()
    data = await rows(
        store, "SELECT key, value FROM turnlog_session_data WHERE session_id = $1", str(alice)
    )
    assert {d["key"]: d["value"] for d in data} == {"count": "3"}  # "last" was deleted
    blocks = await rows(
        store,
        "SELECT block_id, payload FROM turnlog_blocks WHERE session_id = $1 ORDER BY first_version",
        str(alice),
    )
    assert [(b["block_id"], b["payload"]) for b in blocks] == [
        ("status", '{"n": 3}'),
        ("welcome", '{"hello": true}'),
    ]


async def test_timeline_has_every_event_with_actor_and_correlation(
    host: SessionHost, projector: Projector, store: EventStore
) -> None:
    alice, _ = await conversation(host)
    await projector.caught_up()
    log = await store.read_stream(str(alice))
    timeline = await rows(
        store,
        "SELECT version, type, actor, correlation_id FROM turnlog_timeline"
        " WHERE stream_id = $1 ORDER BY position",
        str(alice),
    )
    assert [(t["version"], t["type"], t["actor"], t["correlation_id"]) for t in timeline] == [
        (r.version, r.type, r.actor, r.correlation_id) for r in log
    ]
    assert all(t["actor"] for t in timeline)


async def test_rebuild_equals_live_exactly(
    host: SessionHost, projector: Projector, store: EventStore
) -> None:
    await conversation(host)
    await conversation(host)
    await projector.caught_up()
    live = await checksums(store)
    seen: list[tuple[int, int]] = []
    position = await rebuild(
        store, list(PROJECTIONS.values()), progress=lambda a, b: seen.append((a, b))
    )
    assert position == await store.last_position()
    assert seen and seen[-1][0] == position
    assert await checksums(store) == live
    # and the live projector goes on from there, on the swapped-in tables
    await conversation(host)
    await projector.caught_up()
    after = await checksums(store)
    await rebuild(store, list(PROJECTIONS.values()))
    assert await checksums(store) == after


async def test_rebuild_while_turns_run_misses_nothing(
    host: SessionHost, projector: Projector, store: EventStore
) -> None:
    async def talk() -> None:
        for _ in range(15):
            await conversation(host)

    talking = asyncio.create_task(talk())
    await asyncio.sleep(0.05)
    await rebuild(store, [PROJECTIONS["history"], PROJECTIONS["sessions"]])
    await talking
    await projector.caught_up()
    live = await checksums(store)
    await rebuild(store, list(PROJECTIONS.values()))
    assert await checksums(store) == live
    count = await store.pool.fetchval("SELECT count(*) FROM turnlog_history")
    expected = await store.pool.fetchval(
        "SELECT count(*) FROM turnlog_events WHERE type = ANY($1)",
        ["session.message_received", "session.reply_sent", "session.notified"],
    )
    assert count == expected


async def test_check_finds_live_tables_equal_then_a_tampered_row(
    host: SessionHost, projector: Projector, store: EventStore
) -> None:
    alice, _ = await conversation(host)
    await projector.caught_up()
    clean = await check(store, list(PROJECTIONS.values()))
    assert {c.table for c in clean} == set(ORDER)
    assert all(c.ok for c in clean), [c for c in clean if not c.ok]
    assert {c.position for c in clean} == {await store.last_position()}

    await store.pool.execute(
        "UPDATE turnlog_session_data SET value = '99' WHERE session_id = $1 AND key = 'count'",
        str(alice),
    )
    await store.pool.execute(
        "DELETE FROM turnlog_history WHERE session_id = $1 AND version = 2", str(alice)
    )
    await conversation(host)  # the projector goes on meanwhile
    await projector.caught_up()
    found = {c.table: c for c in await check(store, list(PROJECTIONS.values()))}
    assert (
        found["turnlog_session_data"].only_live,
        found["turnlog_session_data"].only_rebuilt,
    ) == (1, 1)
    assert (found["turnlog_history"].only_live, found["turnlog_history"].only_rebuilt) == (0, 1)
    assert any("99" in s for s in found["turnlog_session_data"].samples)
    assert all(found[t].ok for t in ORDER if t not in ("turnlog_session_data", "turnlog_history"))
    left = await store.pool.fetchval(
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'turnlog_check_%'"
    )
    assert left == 0
