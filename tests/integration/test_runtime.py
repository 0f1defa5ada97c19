"""The Session runtime on a real PostgreSQL: what handlers do is recorded and delivered."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

import turnlog
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.app.log.records import RecordedEvent
from turnlog.services.app.sessions.host import SessionEnded, SessionHost, SessionOfAnotherApp
from turnlog.services.app.sessions.outbound import BlockView, Chunk, Collector, Notification, Reply
from turnlog.services.app.sessions.turn import Inbound, TurnResult
from turnlog.services.bootstrap.wiring import Wiring

ALICE = turnlog.UserInfo(id="alice", email="alice@example.com", org_id="acme")


async def read_plain(store: EventStore, session_id: uuid.UUID) -> list[RecordedEvent]:
    """A session's events with their personal fields unsealed."""
    return await store.keyring.unseal(await store.read_stream(str(session_id)))


def inbound(text: str, session_id: uuid.UUID | None = None, mid: str | None = None) -> Inbound:
    return Inbound(
        message_id=mid or uuid.uuid4().hex,
        text=text,
        user=ALICE,
        session_id=session_id,
        channel=turnlog.SessionChannel(type="test"),
    )


async def types_of(store: EventStore, session_id: uuid.UUID) -> list[str]:
    return [r.type for r in await store.read_stream(str(session_id))]


@pytest.fixture
def delivered() -> Collector:
    return Collector()


@pytest.fixture
async def make_host(store: EventStore, delivered: Collector) -> AsyncIterator[Any]:
    hosts: list[SessionHost] = []

    def make(app: turnlog.App, **options: Any) -> SessionHost:
        host = Wiring.postgres(store).host(app, delivered, **options)
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        await host.stop()


async def test_reply_notify_and_blocks_are_recorded_then_delivered(
    make_host: Any, store: EventStore, delivered: Collector
) -> None:
    app = turnlog.App("demo")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        await session.notify("Thinking...")
        await session.show(turnlog.Block("card", {"title": msg.text}, id="c1"))
        await session.reply(f"you said {msg.text}")

    result = await make_host(app).handle(inbound("hello"))
    assert result.outcome == "ok" and result.replies == ("you said hello",)
    assert await types_of(store, result.session_id) == [
        "session.started",
        "session.message_received",
        "session.notified",
        "session.block_shown",
        "session.reply_sent",
        "session.turn_completed",
    ]
    assert delivered.of(result.session_id) == [
        Notification("Thinking..."),
        BlockView("c1", "card", {"title": "hello"}),
        Reply("you said hello"),
    ]
    records = await store.read_stream(str(result.session_id))
    assert records[1].actor == "user:alice" and records[4].actor == "app:demo"
    assert {r.correlation_id for r in records} == {result.message_id}


async def test_a_quick_turn_commits_reply_data_and_outcome_together(
    make_host: Any, store: EventStore
) -> None:
    app = turnlog.App("quick")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        session.data["last"] = msg.text
        await session.reply("ok")

    result = await make_host(app).handle(inbound("hi"))
    rows = await store.pool.fetch(
        "SELECT type, xmin::text FROM turnlog_events WHERE stream_id = $1 AND version > 1"
        " ORDER BY version",
        str(result.session_id),
    )
    assert [r[0] for r in rows] == [
        "session.message_received",
        "session.reply_sent",
        "session.data_set",
        "session.turn_completed",
    ]
    transactions = [r[1] for r in rows]
    assert transactions[0] != transactions[1]  # the message is on record before the handler
    assert len(set(transactions[1:])) == 1  # the rest of the turn: one commit


async def test_a_reply_goes_out_on_record_while_the_handler_keeps_working(
    store: EventStore,
) -> None:
    app = turnlog.App("slowpoke")
    release = asyncio.Event()
    seen_on_record: list[bool] = []

    class CheckingDelivery:
        async def deliver(self, session_id: uuid.UUID, item: Any) -> None:
            if isinstance(item, Reply):
                types = [r.type for r in await store.read_stream(str(session_id))]
                seen_on_record.append("session.reply_sent" in types)
                release.set()  # the handler may finish only once the user has the reply

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        await session.reply("working on it")
        await asyncio.wait_for(release.wait(), timeout=10)

    host = Wiring.postgres(store).host(app, CheckingDelivery())
    result = await host.handle(inbound("go"))
    await host.stop()
    assert result.outcome == "ok" and seen_on_record == [True]


async def test_sync_handlers_run_and_their_effects_are_recorded(
    make_host: Any, store: EventStore
) -> None:
    app = turnlog.App("sync")

    @app.message()
    def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        session.reply("first")
        session.reply("second")
        session.data["seen"] = msg.text

    result = await make_host(app).handle(inbound("x"))
    assert result.replies == ("first", "second")
    assert "session.data_set" in await types_of(store, result.session_id)


async def test_streamed_reply_goes_out_in_chunks_and_is_recorded_once(
    make_host: Any, store: EventStore, delivered: Collector
) -> None:
    app = turnlog.App("stream")

    async def words() -> AsyncIterator[str]:
        for word in ("one ", "two ", "three"):
            yield word

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        async with session.stream_reply() as reply:
            reply.write("Starting... ")
            reply.write("done.")
        assert reply.text == "Starting... done."
        full = await session.stream_reply_from(words())
        assert full == "one two three"

    result = await make_host(app).handle(inbound("go"))
    chunks = [i.text for i in delivered.of(result.session_id, Chunk)]
    assert chunks == ["Starting... ", "done.", "one ", "two ", "three"]
    assert delivered.of(result.session_id, Reply) == [
        Reply("Starting... done.", streamed=True),
        Reply("one two three", streamed=True),
    ]
    replies = [
        r for r in await store.read_stream(str(result.session_id)) if r.type == "session.reply_sent"
    ]
    assert len(replies) == 2 and b'"streamed":true' in replies[0].payload


async def test_a_stream_cut_by_an_error_records_the_partial_text_as_interrupted(
    make_host: Any, store: EventStore
) -> None:
    app = turnlog.App("cut")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        async with session.stream_reply() as reply:
            reply.write("partial answer")
            raise ConnectionError("model went away")

    result = await make_host(app).handle(inbound("go"))
    assert result.outcome == "failed" and result.error_type == "ConnectionError"
    payloads = [
        r.payload
        for r in await read_plain(store, result.session_id)
        if r.type == "session.reply_sent"
    ]
    assert b'"text":"partial answer","streamed":true,"interrupted":true' in payloads[0]


async def test_a_failing_handler_is_recorded_answered_and_the_session_stays_usable(
    make_host: Any, store: EventStore
) -> None:
    app = turnlog.App("flaky")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        session.data["count"] = session.data.get("count", 0) + 1
        if msg.text == "boom":
            raise KeyError("missing")
        await session.reply(f"count={session.data['count']}")

    host = make_host(app)
    failed = await host.handle(inbound("boom"))
    assert failed.outcome == "failed" and failed.error_type == "KeyError"
    assert failed.replies and "KeyError" in failed.replies[0]
    ok = await host.handle(inbound("again", failed.session_id))
    assert ok.outcome == "ok" and ok.replies == ("count=2",)  # data of the failed turn kept
    records = await store.read_stream(str(failed.session_id))
    completed = [r.payload for r in records if r.type == "session.turn_completed"]
    assert b'"outcome":"failed"' in completed[0] and b'"error_type":"KeyError"' in completed[0]
    assert b'"outcome":"ok"' in completed[1]


async def test_data_changes_become_per_key_events_including_nested_mutation(
    make_host: Any, store: EventStore
) -> None:
    app = turnlog.App("data")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        if msg.text == "setup":
            session.data["notes"] = ["a"]
            session.data["prefs"] = {"theme": {"color": "blue"}}
            session.data["tmp"] = 1
        elif msg.text == "mutate":
            session.data["notes"].append("b")
            session.data["prefs"]["theme"]["color"] = "red"
            del session.data["tmp"]
        # "nothing": no change at all

    host = make_host(app)
    first = await host.handle(inbound("setup"))
    await host.handle(inbound("mutate", first.session_id))
    await host.handle(inbound("nothing", first.session_id))
    records = await read_plain(store, first.session_id)
    data = [(r.type, r.payload) for r in records if r.type.startswith("session.data")]
    assert data == [
        ("session.data_set", b'{"key":"notes","value":["a"]}'),
        ("session.data_set", b'{"key":"prefs","value":{"theme":{"color":"blue"}}}'),
        ("session.data_set", b'{"key":"tmp","value":1}'),
        ("session.data_set", b'{"key":"notes","value":["a","b"]}'),
        ("session.data_set", b'{"key":"prefs","value":{"theme":{"color":"red"}}}'),
        ("session.data_deleted", b'{"key":"tmp"}'),
    ]


async def test_a_value_that_cannot_be_recorded_fails_the_turn_and_is_not_kept(
    make_host: Any, store: EventStore
) -> None:
    app = turnlog.App("bad-data")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        if msg.text == "bad":
            session.data["when"] = {1, 2}
            session.data["ok"] = "fine"
        else:
            await session.reply(f"keys={sorted(session.data)}")

    host = make_host(app)
    bad = await host.handle(inbound("bad"))
    assert bad.outcome == "failed" and bad.error_type == "NotJSONEncodable"
    assert "session.data['when']" in (bad.error_message or "")
    check = await host.handle(inbound("check", bad.session_id))
    assert check.replies == ("keys=['ok']",)


async def test_history_and_chat_messages(make_host: Any) -> None:
    app = turnlog.App("hist")
    seen: dict[str, Any] = {}

    @dataclass
    class ChatMessage:
        role: str
        content: str

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        if msg.text == "inspect":
            seen["history"] = [(m.sender, m.text) for m in session.history]
            seen["chat"] = session.chat_messages(msg)
            seen["typed"] = session.chat_messages(msg, cls=ChatMessage)
            return
        await session.notify("not history")
        await session.show(turnlog.Block("card", {}))
        await session.reply(f"re: {msg.text}")
        if msg.text == "two":
            await session.reply("and more")

    host = make_host(app)
    first = await host.handle(inbound("one"))
    await host.handle(inbound("two", first.session_id))
    await host.handle(inbound("inspect", first.session_id))
    assert seen["history"] == [
        ("user", "one"),
        ("app", "re: one"),
        ("user", "two"),
        ("app", "re: two"),
        ("app", "and more"),
    ]
    assert seen["chat"] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "re: one"},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "re: two\n\nand more"},
        {"role": "user", "content": "inspect"},
    ]
    assert seen["typed"][3] == ChatMessage("assistant", "re: two\n\nand more")


async def test_identity_channel_integrations_and_current_session(make_host: Any) -> None:
    app = turnlog.App("who")
    seen: dict[str, Any] = {}

    def helper() -> str:
        current = turnlog.current_session()
        return current.id if current else "none"

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        seen.update(
            user=session.user,
            owner=session.user.owner_id,
            channel=session.channel,
            integrations=dict(session.integrations),
            via_helper=helper(),
            in_task=await asyncio.create_task(asyncio.to_thread(lambda: "x")),
            msg=msg,
        )

    result = await make_host(app).handle(inbound("hi"))
    assert seen["user"] == ALICE and seen["owner"] == "org:acme"
    assert seen["channel"] == turnlog.SessionChannel(type="test")
    assert seen["integrations"] == {}
    assert seen["via_helper"] == str(result.session_id)
    assert seen["msg"].text == "hi" and seen["msg"].sender == "user"
    assert turnlog.current_session() is None
    assert turnlog.UserInfo(id="solo").owner_id == "solo"


async def test_turns_of_a_session_run_in_order_and_sessions_run_concurrently(
    make_host: Any, store: EventStore
) -> None:
    app = turnlog.App("order")
    running: dict[str, int] = {}
    overlap = {"max_sessions": 0, "same_session": 0}

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        running[session.id] = running.get(session.id, 0) + 1
        overlap["same_session"] = max(overlap["same_session"], running[session.id])
        overlap["max_sessions"] = max(
            overlap["max_sessions"], sum(1 for v in running.values() if v)
        )
        await asyncio.sleep(0.002)
        session.data.setdefault("seen", []).append(int(msg.text))
        await session.reply(msg.text)
        running[session.id] -= 1

    host = make_host(app)
    a, b = uuid.uuid4(), uuid.uuid4()
    tasks = []
    for i in range(50):  # interleaved: a0 b0 a1 b1 ... submitted in this order
        tasks.append(asyncio.create_task(host.handle(inbound(str(i), a))))
        tasks.append(asyncio.create_task(host.handle(inbound(str(i), b))))
    results: list[TurnResult] = await asyncio.gather(*tasks)
    assert all(r.outcome == "ok" for r in results)
    assert overlap["same_session"] == 1 and overlap["max_sessions"] == 2
    for sid in (a, b):
        records = await read_plain(store, sid)
        texts = [r.payload for r in records if r.type == "session.message_received"]
        assert [int(t.split(b'"text":"')[1].split(b'"')[0]) for t in texts] == list(range(50))
        last_data = [r.payload for r in records if r.type == "session.data_set"][-1]
        assert last_data.endswith(b",".join(str(i).encode() for i in range(50)) + b"]}")


async def test_sessions_survive_a_restart(store: EventStore, database_url: str) -> None:
    app = turnlog.App("notes")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        if msg.text.startswith("remember "):
            session.data.setdefault("notes", []).append(msg.text.removeprefix("remember "))
            await session.reply("ok")
        else:
            await session.reply(f"{session.data.get('notes')} after {len(session.history)}")

    first = Wiring.postgres(store).host(app, snapshot_every=4)
    one = await first.handle(inbound("remember a"))
    await first.handle(inbound("remember b", one.session_id))
    await first.stop()

    other_store = await EventStore.connect(database_url)
    try:
        second = Wiring.postgres(other_store).host(app, snapshot_every=4)
        result = await second.handle(inbound("notes", one.session_id))
        assert result.replies == ("['a', 'b'] after 4",)
        await second.stop()
    finally:
        await other_store.close()


async def test_without_resumption_a_turn_cut_off_by_a_crash_is_recorded_interrupted(
    store: EventStore, database_url: str
) -> None:
    app = turnlog.App("crashy", resume_turns=False)
    gate, reached = asyncio.Event(), asyncio.Event()

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        if msg.text == "hang":
            await session.notify("working")
            await session.flush()  # on record from here on
            reached.set()
            await gate.wait()  # the process "dies" here
        await session.reply("alive")

    doomed = Wiring.postgres(store).host(app)
    sid = uuid.uuid4()
    task = asyncio.create_task(doomed.handle(inbound("hang", sid, mid="m-hang")))
    await asyncio.wait_for(reached.wait(), timeout=10)
    task.cancel()  # nothing after this point is recorded by the dying process

    other = await EventStore.connect(database_url)
    try:
        fresh = Wiring.postgres(other).host(app)
        result = await fresh.handle(inbound("hello", sid))
        assert result.replies == ("alive",)
        records = await other.read_stream(str(sid))
        types = [r.type for r in records]
        assert types[types.index("session.notified") + 1] == "session.turn_interrupted"
        interrupted = records[types.index("session.turn_interrupted")]
        assert b'"message_id":"m-hang"' in interrupted.payload
    finally:
        await other.close()


async def test_a_message_id_already_received_runs_no_second_turn(
    make_host: Any, store: EventStore
) -> None:
    app = turnlog.App("once")
    runs: list[str] = []

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        runs.append(msg.text)
        await session.reply("ran")

    host = make_host(app)
    first = await host.handle(inbound("pay the invoice", mid="m-1"))
    again = await host.handle(inbound("pay the invoice", first.session_id, mid="m-1"))
    elsewhere = await host.handle(inbound("pay the invoice", uuid.uuid4(), mid="m-1"))
    assert (first.outcome, again.outcome, elsewhere.outcome) == ("ok", "duplicate", "duplicate")
    assert runs == ["pay the invoice"]
    after = await host.handle(inbound("next", first.session_id, mid="m-2"))
    assert after.outcome == "ok" and runs == ["pay the invoice", "next"]
    assert (await types_of(store, first.session_id)).count("session.message_received") == 2


async def test_a_session_of_one_app_is_refused_by_another(make_host: Any) -> None:
    notes, shop = turnlog.App("notes"), turnlog.App("shop")
    for app in (notes, shop):
        app.message()(lambda session, msg: None)
    first = await make_host(notes).handle(inbound("hi"))
    with pytest.raises(SessionOfAnotherApp, match="belongs to app 'notes', not 'shop'"):
        await make_host(shop).handle(inbound("hello", first.session_id))


async def test_live_sessions_are_cached_with_a_bound(make_host: Any) -> None:
    app = turnlog.App("many")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        session.data["n"] = session.data.get("n", 0) + 1
        await session.reply(str(session.data["n"]))

    host = make_host(app, max_live=3)
    ids = [uuid.uuid4() for _ in range(8)]
    for sid in ids:
        await host.handle(inbound("x", sid))
    assert host.live_count() <= 3
    again = [await host.handle(inbound("x", sid)) for sid in ids]
    assert [r.replies for r in again] == [("2",)] * 8  # reloaded from the log


async def test_lifecycle_hooks(make_host: Any, store: EventStore, delivered: Collector) -> None:
    app = turnlog.App("hooks")
    calls: list[str] = []

    @app.boot()
    def boot() -> None:
        calls.append("boot")

    @app.enter()
    async def enter(session: turnlog.Session) -> None:
        calls.append("enter")
        await session.reply("Welcome!")

    @app.exit()
    async def leave(session: turnlog.Session) -> None:
        calls.append("exit")
        await session.notify("Bye")

    @app.shutdown()
    async def shutdown() -> None:
        calls.append("shutdown")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        calls.append(f"msg:{msg.text}")

    host = make_host(app)
    first = await host.handle(inbound("a"))
    await host.handle(inbound("b", first.session_id))
    assert await host.close(first.session_id) is True
    assert await host.close(first.session_id) is False
    with pytest.raises(SessionEnded):
        await host.handle(inbound("late", first.session_id))
    await host.stop()
    assert calls == ["boot", "enter", "msg:a", "msg:b", "exit", "shutdown"]
    assert await types_of(store, first.session_id) == [
        "session.started",
        "session.reply_sent",
        "session.message_received",
        "session.turn_completed",
        "session.message_received",
        "session.turn_completed",
        "session.notified",
        "session.ended",
    ]
    assert delivered.of(first.session_id)[0] == Reply("Welcome!")


async def test_idle_sessions_are_closed_after_the_timeout(
    make_host: Any, store: EventStore
) -> None:
    app = turnlog.App("idle")
    exited = asyncio.Event()

    @app.exit()
    def leave(session: turnlog.Session) -> None:
        exited.set()

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        await session.reply("hi")

    host = make_host(app, idle_timeout=0.2)
    result = await host.handle(inbound("x"))
    await asyncio.wait_for(exited.wait(), timeout=5)
    for _ in range(100):
        records = await store.read_stream(str(result.session_id))
        if records[-1].type == "session.ended":
            break
        await asyncio.sleep(0.02)
    assert records[-1].type == "session.ended" and b"idle_timeout" in records[-1].payload


def test_an_app_needs_a_message_handler_and_only_one() -> None:
    app = turnlog.App("empty")
    with pytest.raises(turnlog.AppError, match=r"no @app\.message"):
        SessionHost(app, None)  # type: ignore[arg-type]

    @app.message()
    def first(session: turnlog.Session, msg: turnlog.Message) -> None: ...

    with pytest.raises(turnlog.AppError, match="already has a message handler"):
        app.message()(first)
    with pytest.raises(turnlog.AppError):
        turnlog.App("has space")
