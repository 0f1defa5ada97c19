"""Erasure by crypto-shredding, on real PostgreSQL: personal fields are sealed from the
start; erase-user makes one user's texts, data and documents read as erased everywhere
(live projections, rebuilds, replay, the query API), leaves every hash chain verifiable
and every other user untouched."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import pytest

import turnlog
from tests.conftest import with_database
from tests.helpers import inbound
from tests.integration.conftest import Start
from turnlog.contracts import events as ev
from turnlog.projections.catalog import PROJECTIONS
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.postgres.erasure import (
    UnknownUser,
    erase_user,
    erasure_stream,
    render,
)
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.projector.check import check as check_projections
from turnlog.services.adapters.postgres.projector.runner import Projector
from turnlog.services.adapters.postgres.queries import QueryService
from turnlog.services.adapters.postgres.replay import state_as_of
from turnlog.services.adapters.postgres.transfer import export, import_
from turnlog.services.app.access import Principal
from turnlog.services.app.log.records import NewEvent
from turnlog.services.app.sealing import KeyMissing
from turnlog.services.app.sessions.outbound import NoDelivery
from turnlog.services.app.sessions.repository import SessionRepository
from turnlog.services.bootstrap.wiring import Wiring

ALICE = turnlog.UserInfo(id="alice", email="alice@example.com")
BOB = turnlog.UserInfo(id="bob")
SECRETS = {"alice": "alice's diagnosis", "bob": "bob's pin 4711"}


def notes_app() -> turnlog.App:
    app = turnlog.App("diary")
    app.collection("entries", scope="user")
    app.collection("board", scope="app")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        session.data["last"] = msg.text
        await session.effect("model", lambda: {"echo": msg.text})
        await session.db.entries.insert_one({"_id": f"e-{msg.id}", "text": msg.text})
        mine = {"_id": f"b-{session.user.id}"}
        if not await session.db.board.update_one(mine, {"seen": msg.text}):
            await session.db.board.insert_one({**mine, "by": msg.text})
            await session.db.board.update_one(mine, {"seen": msg.text})
        await session.notify(f"noting {msg.text}")
        await session.reply(f"noted: {msg.text}")

    return app


async def converse(store: EventStore) -> dict[str, uuid.UUID]:
    """A session each for alice and bob, with their secret said in it."""
    host = Wiring.postgres(store).host(notes_app(), NoDelivery())
    sessions = {}
    try:
        for user in (ALICE, BOB):
            result = await host.handle(inbound(SECRETS[user.id], user))
            sessions[user.id] = result.session_id
    finally:
        await host.stop()
    return sessions


@contextlib.asynccontextmanager
async def projecting(store: EventStore) -> AsyncIterator[Projector]:
    projector = Projector(store, list(PROJECTIONS.values()))
    task = asyncio.create_task(projector.run())
    await projector.ready.wait()
    try:
        yield projector
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def views(store: EventStore, sid: uuid.UUID, user: str) -> dict[str, Any]:
    """What the projections hold of one session and its user's documents."""
    history = await store.pool.fetch(
        "SELECT kind, text FROM turnlog_history WHERE session_id = $1 ORDER BY version", str(sid)
    )
    data = await store.pool.fetch(
        "SELECT key, value FROM turnlog_session_data WHERE session_id = $1", str(sid)
    )
    docs = await store.pool.fetch(
        "SELECT doc_id, doc FROM turnlog_documents WHERE doc_id LIKE '%' || $1 OR owner = $1"
        " ORDER BY doc_id",
        user,
    )
    email = await store.pool.fetchval(
        "SELECT user_email FROM turnlog_sessions WHERE session_id = $1", str(sid)
    )
    return {
        "email": email,
        "history": [(r[0], r[1]) for r in history],
        "data": {r[0]: json.loads(r[1]) for r in data},
        "documents": {r[0]: json.loads(r[1]) for r in docs},
    }


def turnlog_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnlog", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
async def other(servers: Endpoints) -> AsyncIterator[EventStore]:
    """A store on a second, empty database."""
    name = f"turnlog_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(servers.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    store = await EventStore.connect(with_database(servers.database_url, name))
    try:
        yield store
    finally:
        await store.close()
        admin = await asyncpg.connect(servers.database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def test_personal_fields_are_sealed_from_the_start(store: EventStore) -> None:
    sessions = await converse(store)
    payloads = b"".join(r[0] for r in await store.pool.fetch("SELECT payload FROM turnlog_events"))
    for secret in [*SECRETS.values(), ALICE.email or ""]:
        assert secret.encode() not in payloads
    assert b'"_sealed":{"user":"alice","key":1' in payloads
    assert b'"_sealed":{"user":"bob","key":1' in payloads
    # readers that present content see it in clear
    session = await SessionRepository(store).load(sessions["alice"])
    assert session.data == {"last": SECRETS["alice"]}
    state = await state_as_of(store, sessions["bob"])
    assert [m.text for m in state.history] == [
        SECRETS["bob"], f"noting {SECRETS['bob']}", f"noted: {SECRETS['bob']}"
    ]  # fmt: skip
    keys = await store.pool.fetch("SELECT user_id, octet_length(key) FROM turnlog_user_keys")
    assert sorted((r[0], r[1]) for r in keys) == [("alice", 32), ("bob", 32)]


async def test_erase_user_erases_one_user_everywhere_and_keeps_the_log_verifiable(
    store: EventStore, other: EventStore, cli_env: dict[str, str]
) -> None:
    sessions = await converse(store)
    async with projecting(store) as projector:
        await projector.caught_up()
        before = {u: await views(store, sessions[u], u) for u in SECRETS}
        assert ("message", SECRETS["alice"]) in before["alice"]["history"]
        exported_before = await _export(store)

        erased = turnlog_cli(cli_env, "erase-user", "alice", "--reason", "request 42")
        assert erased.returncode == 0, erased.stderr
        assert "erased user alice: key generation(s) 1 destroyed" in erased.stdout
        assert "1 session(s), 2 document(s)" in erased.stdout
        await projector.caught_up()
        live = {u: await views(store, sessions[u], u) for u in SECRETS}

    alice, bob = live["alice"], live["bob"]
    assert before["alice"]["email"] == "alice@example.com" and alice["email"] is None
    assert alice["history"] == [
        ("message", "[erased]"), ("notification", "[erased]"), ("reply", "[erased]")
    ]  # fmt: skip
    assert alice["data"] == {"last": "[erased]"}
    assert alice["documents"] == {
        "b-alice": {"_id": "b-alice", "_erased": True},
        **{d: {"_id": d, "_erased": True} for d in alice["documents"] if d.startswith("e-")},
    }
    assert len(alice["documents"]) == 2
    assert bob == before["bob"]
    assert ("message", SECRETS["bob"]) in bob["history"]

    # the log is what it was, plus the erasure event; every chain holds
    assert (await _export(store)).startswith(exported_before)
    [event] = await store.read_stream(erasure_stream("alice"))
    assert event.type == "user.erased" and event.actor and event.actor.startswith("operator:")
    assert json.loads(event.payload) == {
        "user_id": "alice", "reason": "request 42", "key_generations": [1], "apps": ["diary"]
    }  # fmt: skip
    verified = turnlog_cli(cli_env, "audit", "verify", "--all")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    checked = turnlog_cli(cli_env, "audit", "check-projections")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # a rebuild makes the same rows, the keys being gone
    rebuilt = turnlog_cli(cli_env, "projections", "rebuild", "--all")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert {u: await views(store, sessions[u], u) for u in SECRETS} == live

    # replay, the runtime's load, the query API and `turnlog events` read it as erased
    state = await state_as_of(store, sessions["alice"])
    assert {m.text for m in state.history} == {"[erased]"} and state.data == {"last": "[erased]"}
    loaded = await SessionRepository(store).load(sessions["alice"])
    assert loaded.data == {"last": "[erased]"}
    page = await QueryService(store.pool).events(Principal("read"), str(sessions["alice"]))
    texts = [e.payload.get("text") for e in page.items if "text" in e.payload]
    assert texts == ["[erased]"] * 3
    effects = [e.payload for e in page.items if e.type == "session.effect_recorded"]
    assert effects == [{"name": "model", "result": "[erased]"}]
    shown = turnlog_cli(cli_env, "events", str(sessions["alice"]))
    assert shown.returncode == 0 and SECRETS["alice"] not in shown.stdout
    assert "[erased]" in shown.stdout

    # export -> import -> export is still byte-identical
    first = await _export(store)
    await import_(other, io.BytesIO(first))
    assert await _export(other) == first

    again = turnlog_cli(cli_env, "erase-user", "alice", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["already_erased"] is True
    unknown = turnlog_cli(cli_env, "erase-user", "nobody")
    assert unknown.returncode == 2 and "no user 'nobody'" in unknown.stderr


async def test_bus_consumers_get_plain_schema_conformant_payloads(
    start_serving: Start, servers: Endpoints, prefix: str
) -> None:
    await start_serving(notes_app())
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        session = client.session("diary", user={"id": "alice"})
        round_ = await session.send_message(SECRETS["alice"])
    finally:
        await client.close()
    assert round_.outcome == "ok" and round_.reply == f"noted: {SECRETS['alice']}"
    types = {p.TYPE: p for p in ev.ALL_PAYLOADS}
    for e in round_.events:
        assert "_sealed" not in e.payload
        msgspec.convert(e.payload, types[e.type])  # raises unless it fits the schema
    assert {"session.message_received", "session.effect_recorded", "session.data_set"} <= {
        e.type for e in round_.events
    }


async def test_a_user_who_writes_after_erasure_gets_a_new_key(store: EventStore) -> None:
    sessions = await converse(store)
    report = await erase_user(store, "alice", reason="asked", actor="operator:test")
    assert report.key_generations == [1] and report.events_sealed > 0
    host = Wiring.postgres(store).host(notes_app(), NoDelivery())
    try:
        old = await host.handle(inbound("back again", ALICE, sessions["alice"]))
        new = await host.handle(inbound("a fresh start", ALICE))
    finally:
        await host.stop()
    assert old.replies == ("noted: back again",)
    state = await state_as_of(store, sessions["alice"])
    assert [m.text for m in state.history] == [
        "[erased]", "[erased]", "[erased]", "back again", "noting back again", "noted: back again"
    ]  # fmt: skip
    fresh = await state_as_of(store, new.session_id)
    assert fresh.data == {"last": "a fresh start"}
    keys = await store.pool.fetch(
        "SELECT generation, key IS NULL FROM turnlog_user_keys WHERE user_id = 'alice'"
        " ORDER BY generation"
    )
    assert [(r[0], r[1]) for r in keys] == [(1, True), (2, False)]
    second = await erase_user(store, "alice", actor="operator:test")
    assert second.key_generations == [2] and not second.already_erased
    assert (await state_as_of(store, new.session_id)).data == {"last": "[erased]"}


async def test_a_runtime_that_still_holds_the_old_key_never_writes_anything_readable_with_it(
    store: EventStore, database_url: str
) -> None:
    """A runtime keeps its cached key for a while after an erasure made elsewhere: what
    it seals with it reads as erased; documents it writes are checked against the keys
    table in their own transaction, so they take the new key, and never carry the erased
    content forward from the collection view."""
    host = Wiring.postgres(store).host(notes_app(), NoDelivery())
    elsewhere = await EventStore.connect(database_url, min_size=1, max_size=2)  # another process
    try:
        first = await host.handle(inbound("before", ALICE))
        await erase_user(elsewhere, "alice", actor="operator:test")
        board = await store.pool.fetchval(
            "SELECT doc FROM turnlog_documents WHERE doc_id = 'b-alice'"
        )
        assert json.loads(board) == {"_id": "b-alice", "_erased": True}  # at once
        after = await host.handle(inbound("after", ALICE, first.session_id))
    finally:
        await host.stop()
        await elsewhere.close()
    assert after.outcome == "ok"
    state = await state_as_of(store, first.session_id)
    # the message came in under the stale key; the document write found it destroyed, and
    # the runtime seals with the new key from then on
    assert [m.text for m in state.history] == ["[erased]"] * 4 + ["noting after", "noted: after"]
    async with projecting(store) as projector:
        await projector.caught_up()
        docs = await views(store, first.session_id, "alice")
    assert docs["documents"]["b-alice"] == {"_id": "b-alice", "_erased": True, "seen": "after"}
    entries = sorted(
        (d for k, d in docs["documents"].items() if k.startswith("e-")), key=lambda d: "text" in d
    )
    assert [set(d) for d in entries] == [{"_id", "_erased"}, {"_id", "text"}]
    assert entries[1]["text"] == "after"
    assert all(table.ok for table in await check_projections(store, list(PROJECTIONS.values())))


async def test_snapshots_of_an_erased_user_are_gone_and_never_read(store: EventStore) -> None:
    host = Wiring.postgres(store).host(notes_app(), NoDelivery(), snapshot_every=2)
    try:
        result = await host.handle(inbound("snap me", ALICE))
    finally:
        await host.stop()
    [state] = await store.pool.fetch("SELECT state FROM turnlog_snapshots")
    assert b"snap me" not in state[0] and b'"_sealed"' in state[0]
    assert (await SessionRepository(store).load(result.session_id)).data == {"last": "snap me"}
    await erase_user(store, "alice", actor="operator:test")
    assert await store.pool.fetchval("SELECT count(*) FROM turnlog_snapshots") == 0
    assert (await SessionRepository(store).load(result.session_id)).data == {"last": "[erased]"}


async def test_erasing_an_unknown_user_is_refused(store: EventStore) -> None:
    await converse(store)
    with pytest.raises(UnknownUser, match="no user 'carol'"):
        await erase_user(store, "carol")


async def test_a_user_with_only_unsealed_events_is_erased_as_far_as_it_can_be(
    store: EventStore,
) -> None:
    at = datetime.now(UTC)
    written_before_sealing = [
        ev.SessionStarted(app="old", user=ev.UserRef(id="dora"), channel=ev.ChannelRef()),
        ev.MessageReceived(message_id="m1", text="from before"),
    ]
    events = [
        NewEvent(type=p.TYPE, schema_version=1, payload=msgspec.json.encode(p), recorded_at=at)
        for p in written_before_sealing
    ]
    await store.append(str(uuid.uuid4()), 0, events)
    report = await erase_user(store, "dora", actor="operator:test")
    assert (report.sessions, report.events_sealed, report.events_unsealed) == (1, 0, 2)
    assert "2 event(s) of their sessions were written before sealing" in render(report)
    assert (await erase_user(store, "dora")).already_erased


async def test_a_log_moved_without_its_keys_is_refused_loudly(
    store: EventStore, other: EventStore
) -> None:
    sessions = await converse(store)
    await import_(other, io.BytesIO(await _export(store)))
    records = await other.read_stream(str(sessions["bob"]))
    with pytest.raises(KeyMissing, match="moved without its keys"):
        await other.keyring.unseal(records)


async def _export(store: EventStore) -> bytes:
    out = io.BytesIO()
    await export(store, out)
    return out.getvalue()
