"""Replay: a session as of a version or a moment, from its events alone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import uuid
from datetime import timedelta

import msgspec
import pytest

import turnlog
from tests import helpers
from turnlog.projections.catalog import PROJECTIONS
from turnlog.projections.state import fold
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.projector.runner import Projector
from turnlog.services.adapters.postgres.projector.writes import decode
from turnlog.services.adapters.postgres.replay import state_as_of
from turnlog.services.app.log.errors import StoreError
from turnlog.services.app.sessions.outbound import NoDelivery
from turnlog.services.bootstrap.wiring import Wiring

ALICE = turnlog.UserInfo(id="alice")


def counting_app() -> turnlog.App:
    app = turnlog.App("counter")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        n = session.data.get("n", 0) + 1
        session.data["n"] = n
        if msg.text == "drop":
            session.data.pop("last", None)
        else:
            session.data["last"] = msg.text
        await session.show(turnlog.Block("card", {"n": n}, id="count"))
        await session.reply(f"#{n} {msg.text}")

    return app


async def converse(store: EventStore, texts: list[str]) -> uuid.UUID:
    return await helpers.converse(store, counting_app(), texts, ALICE)


async def test_state_as_of_each_turn(store: EventStore) -> None:
    sid = await converse(store, ["a", "b", "drop"])
    records = await store.read_stream(str(sid))
    ends = [r.version for r in records if r.type == "session.turn_completed"]

    first = await state_as_of(store, sid, to_version=ends[0])
    assert first.data == {"n": 1, "last": "a"}
    assert [(m.kind, m.text) for m in first.history] == [("message", "a"), ("reply", "#1 a")]
    assert [(b.block_id, b.payload) for b in first.blocks] == [("count", {"n": 1})]

    last = await state_as_of(store, sid)
    assert last.version == records[-1].version
    assert last.data == {"n": 3}  # "last" was dropped in the third turn
    assert [m.text for m in last.history if m.kind == "reply"] == ["#1 a", "#2 b", "#3 drop"]

    # by time: just before the second turn's message was recorded
    second_message = next(
        r for r in records if r.type == "session.message_received" and r.version > ends[0]
    )
    before = await state_as_of(
        store, sid, at=second_message.recorded_at - timedelta(microseconds=1)
    )
    assert before.version == ends[0] and before.data == first.data


async def test_latest_replay_equals_the_projections(store: EventStore) -> None:
    sid = await converse(store, ["x", "y"])
    projector = Projector(store, list(PROJECTIONS.values()))
    task = asyncio.create_task(projector.run())
    await projector.ready.wait()
    await projector.caught_up()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    state = await state_as_of(store, sid)
    history = await store.pool.fetch(
        "SELECT version, text FROM turnlog_history WHERE session_id = $1 ORDER BY version",
        str(sid),
    )
    assert [(m.version, m.text) for m in state.history] == [(r[0], r[1]) for r in history]
    data = await store.pool.fetch(
        "SELECT key, value FROM turnlog_session_data WHERE session_id = $1", str(sid)
    )
    assert state.data == {r[0]: json.loads(r[1]) for r in data}


async def test_points_outside_the_session_are_clear_errors(store: EventStore) -> None:
    sid = await converse(store, ["a"])
    with pytest.raises(StoreError, match="no events for session"):
        await state_as_of(store, uuid.uuid4())
    with pytest.raises(StoreError, match="no version 999"):
        await state_as_of(store, sid, to_version=999)
    first = (await store.read_stream(str(sid)))[0]
    with pytest.raises(StoreError, match="did not exist yet"):
        await state_as_of(store, sid, at=first.recorded_at - timedelta(seconds=1))


async def test_replay_command(store: EventStore, cli_env: dict[str, str]) -> None:
    sid = await converse(store, ["hello", "again"])

    def turnlog_(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "turnlog", "replay", str(sid), *args],
            env=cli_env, text=True, capture_output=True, timeout=120, check=False,
        )  # fmt: skip

    as_json = turnlog_("--to-version", "6", "--json")
    assert as_json.returncode == 0, as_json.stderr
    state = json.loads(as_json.stdout)
    assert state["version"] == 6 and state["data"] == {"n": 1, "last": "hello"}
    text = turnlog_()
    assert text.returncode == 0, text.stderr
    assert "app: #2 again" in text.stdout and "n = 2" in text.stdout
    naive = turnlog_("--at", "2026-01-01T00:00:00")
    assert naive.returncode == 1 and "time zone" in naive.stderr
    bad = turnlog_("--at", "yesterday")
    assert bad.returncode == 2 and "not an ISO 8601 time" in bad.stderr


async def test_a_long_replay_keeps_its_state_and_later_replays_start_from_it(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from turnlog.services.adapters.postgres import replay

    monkeypatch.setattr(replay, "KEEP_EVERY", 20)
    sid = await converse(store, [f"m{i}" for i in range(6)])  # 6 events a turn
    first = (await state_as_of(store, sid)).version
    kept = await store.pool.fetch(
        "SELECT version, state FROM turnlog_state_snapshots WHERE stream_id = $1", str(sid)
    )
    assert [r["version"] for r in kept] == [first]
    assert b"#6 m5" not in kept[0]["state"]  # sealed like the events it comes from

    host = Wiring.postgres(store).host(counting_app(), NoDelivery())
    try:
        for text in ("later", "drop"):
            await host.handle(helpers.inbound(text, ALICE, sid))
    finally:
        await host.stop()

    async def from_scratch(to_version: int) -> object:
        records = await store.read_stream(str(sid), to_version=to_version)
        return msgspec.to_builtins(fold(str(sid), decode(await store.keyring.unseal(records))))

    latest = await state_as_of(store, sid)  # from the kept state: 12 events folded, not kept
    assert latest.version == first + 12 and "last" not in latest.data
    assert msgspec.to_builtins(latest) == await from_scratch(latest.version)
    assert [b.payload for b in latest.blocks] == [{"n": 8}]
    assert await store.pool.fetchval("SELECT count(*) FROM turnlog_state_snapshots") == 1
    earlier = await state_as_of(store, sid, to_version=12)  # before the kept state
    assert msgspec.to_builtins(earlier) == await from_scratch(12)
    # A kept state of another encoding is ignored, not misread.
    await store.pool.execute("UPDATE turnlog_state_snapshots SET schema_version = 99")
    again = await state_as_of(store, sid)
    assert msgspec.to_builtins(again) == await from_scratch(latest.version)


async def test_a_kept_state_goes_with_its_users_erasure(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from turnlog.services.adapters.postgres import replay
    from turnlog.services.adapters.postgres.erasure import erase_user

    monkeypatch.setattr(replay, "KEEP_EVERY", 5)
    sid = await converse(store, ["my secret plan", "again"])
    assert (await state_as_of(store, sid)).history[0].text == "my secret plan"
    assert await store.pool.fetchval("SELECT count(*) FROM turnlog_state_snapshots") == 1
    await erase_user(store, "alice")
    assert await store.pool.fetchval("SELECT count(*) FROM turnlog_state_snapshots") == 0
    state = await state_as_of(store, sid)
    assert {m.text for m in state.history} == {"[erased]"}
