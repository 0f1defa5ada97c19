"""Durable turns on the memory adapters: a turn cut off mid-way is taken up again by the
next host that loads its session, and what its first attempt put on record is neither
recorded nor delivered twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

import turnlog
from turnlog.services.app.sessions.host import SessionHost
from turnlog.services.app.sessions.outbound import Chunk, Notification, Reply
from turnlog.services.app.sessions.resume import ATTEMPTS
from turnlog.services.app.sessions.turn import Inbound
from turnlog.services.app.values import UserInfo
from turnlog.services.bootstrap.testing import AppTester


class Crash:
    """Cuts the turn off where the handler calls ``point()`` while ``armed``: the handler
    waits there for ever, and the test cancels its turn as a kill would end it."""

    def __init__(self) -> None:
        self.armed = True
        self.reached = asyncio.Event()
        self.calls: list[str] = []

    async def point(self) -> None:
        if self.armed:
            self.reached.set()
            await asyncio.Event().wait()


def app_with(crash: Crash, **options: Any) -> turnlog.App:
    app = turnlog.App("durable", **options)

    def model(prompt: str) -> str:
        crash.calls.append(prompt)
        return f"answer to {prompt}"

    async def stream(text: str) -> AsyncIterator[str]:
        crash.calls.append("stream")
        for word in text.split(" "):
            yield word + " "

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        crash.calls.append(f"history:{[m.text for m in session.history]}")
        answer = await session.effect("model", model, msg.text)
        ticket, moment = session.uuid(), session.now()
        await session.reply(f"first: {answer}")
        await session.notify("working")
        await session.stream_reply_from(stream(f"streamed {ticket}"))
        session.show(turnlog.Block("card", {"ticket": ticket, "at": moment.isoformat()}))
        await session.flush()
        await crash.point()
        await session.reply(f"second: {ticket}")
        session.data["done"] = session.data.get("done", 0) + 1

    return app


def inbound(session_id: uuid.UUID, message_id: str, text: str) -> Inbound:
    return Inbound(message_id, text, UserInfo(id="u1"), session_id=session_id)


async def cut_off(host: SessionHost, crash: Crash, message: Inbound) -> None:
    """Run ``message``'s turn until the crash point, then end it as a kill would."""
    crash.reached = asyncio.Event()
    turn = asyncio.create_task(host.handle(message))
    await asyncio.wait_for(crash.reached.wait(), 5)
    turn.cancel()
    with pytest.raises(asyncio.CancelledError):
        await turn


async def types(t: AppTester, session_id: uuid.UUID) -> list[str]:
    return [r.type for r in await t.log.read_stream(str(session_id))]


async def test_a_cut_off_turn_is_resumed_without_doing_again_what_is_on_record() -> None:
    crash = Crash()
    async with AppTester(app_with(crash)) as t:
        sid = uuid.uuid4()
        first = t.wiring.host(t.app, t.delivered)
        await cut_off(first, crash, inbound(sid, "m1", "hello"))
        before = list(t.delivered.of(sid))
        crash.armed = False
        second = t.wiring.host(t.app, t.delivered)  # the next process, its cache empty
        result = await second.handle(inbound(sid, "m1", "hello"))  # redelivered
        assert (result.outcome, result.attempt) == ("ok", 2)
        assert [c for c in crash.calls if not c.startswith("history")] == ["hello", "stream"]
        again = t.delivered.of(sid)[len(before) :]
        assert again == [Reply(result.replies[-1])]
        assert result.replies[-1].startswith("second: ")
        assert result.replies[0] == "first: answer to hello"
        recorded = await types(t, sid)
        assert recorded[recorded.index("session.turn_resumed") :] == [
            "session.turn_resumed",
            "session.reply_sent",
            "session.data_set",
            "session.turn_completed",
        ]
        assert recorded.count("session.effect_recorded") == 4  # model, uuid, now, stream
        assert recorded.count("session.reply_sent") == 3 and recorded.count("session.notified") == 1
        ticket = result.replies[-1].removeprefix("second: ")
        assert any(ticket in r for r in result.replies[1:2])  # uuid() handed back
        assert (await second.handle(inbound(sid, "m1", "hello"))).outcome == "duplicate"


async def test_the_next_message_resumes_the_cut_off_turn_first_in_order() -> None:
    crash = Crash()
    async with AppTester(app_with(crash)) as t:
        sid = uuid.uuid4()
        await cut_off(t.wiring.host(t.app, t.delivered), crash, inbound(sid, "m1", "one"))
        crash.armed = False
        host = t.wiring.host(t.app, t.delivered)
        result = await host.handle(inbound(sid, "m2", "two"))
        assert result.message_id == "m2" and result.attempt == 1
        history = [c for c in crash.calls if c.startswith("history")]
        assert history[:2] == ["history:[]", "history:[]"]  # as the first attempt saw it
        assert history[2].startswith("history:['one', 'first: answer to one', 'streamed ")
        assert "second: " in history[2] and len(history) == 3
        recorded = await types(t, sid)
        completed = [i for i, kind in enumerate(recorded) if kind == "session.turn_completed"]
        received = [i for i, kind in enumerate(recorded) if kind == "session.message_received"]
        assert len(completed) == 2 and completed[0] < received[1]
        assert (await t.log.read_stream(str(sid)))[-1].type == "session.turn_completed"
        assert (await host.handle(inbound(sid, "m1", "one"))).outcome == "duplicate"


async def test_a_turn_that_keeps_being_cut_off_is_given_up_and_told() -> None:
    crash = Crash()
    async with AppTester(app_with(crash)) as t:
        sid = uuid.uuid4()
        message = inbound(sid, "m1", "poison")
        for _ in range(ATTEMPTS):
            await cut_off(t.wiring.host(t.app, t.delivered), crash, message)
        told: list[tuple[uuid.UUID, str, str]] = []

        async def given_up(session_id: uuid.UUID, message: Inbound, reason: str) -> None:
            told.append((session_id, message.text, reason))

        host = t.wiring.host(t.app, t.delivered)
        host.on_given_up(given_up)
        assert (await host.handle(message)).outcome == "duplicate"
        assert told == [(sid, "poison", f"given up after {ATTEMPTS} attempts, each cut off"
                         " before it completed")]  # fmt: skip
        recorded = await types(t, sid)
        assert recorded.count("session.turn_resumed") == ATTEMPTS - 1
        assert recorded[-1] == "session.turn_interrupted"


async def test_without_resume_turns_a_cut_off_turn_is_recorded_interrupted() -> None:
    crash = Crash()
    async with AppTester(app_with(crash, resume_turns=False)) as t:
        sid = uuid.uuid4()
        await cut_off(t.wiring.host(t.app, t.delivered), crash, inbound(sid, "m1", "one"))
        crash.armed = False
        calls = len(crash.calls)
        host = t.wiring.host(t.app, t.delivered)
        assert (await host.handle(inbound(sid, "m1", "one"))).outcome == "duplicate"
        assert len(crash.calls) == calls  # the handler did not run again
        recorded = await types(t, sid)
        assert "session.turn_resumed" not in recorded
        assert recorded[-1] == "session.turn_interrupted"


async def test_the_handler_flag_overrides_the_app() -> None:
    app = turnlog.App("flags")

    @app.message(resume_turns=False)
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        await session.reply("hi")

    assert app.resume_turns is False
    assert turnlog.App("default").resume_turns is True


async def test_a_prompt_left_waiting_is_interrupted_and_the_turn_asks_again() -> None:
    app = turnlog.App("asks")
    runs: list[int] = []

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        runs.append(1)
        upload = await session.prompt_file("Send it", timeout=None if len(runs) == 1 else 0.01)
        await session.reply(f"got {upload.name}")

    async with AppTester(app) as t:
        sid = uuid.uuid4()
        first = t.wiring.host(t.app, t.delivered)
        turn = asyncio.create_task(first.handle(inbound(sid, "m1", "file please")))
        while "session.prompted" not in await types(t, sid):  # noqa: ASYNC110 (the log's)
            await asyncio.sleep(0.01)
        turn.cancel()
        with pytest.raises(asyncio.CancelledError):
            await turn
        result = await t.wiring.host(t.app, t.delivered).handle(inbound(sid, "m1", "file please"))
        assert result.attempt == 2 and result.outcome == "failed"  # the new prompt timed out
        recorded = await types(t, sid)
        assert recorded.index("session.prompt_interrupted") < recorded.index("session.turn_resumed")
        assert recorded.count("session.prompted") == 2 and len(runs) == 2
        marked = [i for i in t.delivered.of(sid) if getattr(i, "type", "") == "file_upload"]
        assert [b.payload["status"] for b in marked] == ["waiting", "interrupted", "waiting",
                                                        "timed_out"]  # fmt: skip


async def test_chunks_of_a_stream_on_record_are_not_sent_again() -> None:
    crash = Crash()
    async with AppTester(app_with(crash)) as t:
        sid = uuid.uuid4()
        await cut_off(t.wiring.host(t.app, t.delivered), crash, inbound(sid, "m1", "one"))
        sent = len(t.delivered.of(sid))
        crash.armed = False
        await t.wiring.host(t.app, t.delivered).handle(inbound(sid, "m1", "one"))
        assert not [i for i in t.delivered.of(sid)[sent:] if isinstance(i, Chunk | Notification)]


async def test_a_snapshot_holds_only_what_its_save_recorded() -> None:
    """A live session changes while its events are appended: the snapshot taken when a
    save crosses the threshold is of the events saved, not of what came after them (a
    snapshot ahead of its stream would stop the session for good)."""
    from datetime import UTC, datetime

    from turnlog.contracts.events import ChannelRef, UserRef
    from turnlog.domain.session import Session
    from turnlog.services.adapters.memory.log import MemoryLog
    from turnlog.services.app.sessions.repository import SessionRepository

    log = MemoryLog()
    repo = SessionRepository(log, snapshot_every=4)
    now = datetime.now(UTC)
    session = Session.start(
        uuid.uuid4(), app="a", user=UserRef(id="u"), channel=ChannelRef(), at=now
    )
    session.receive_message(message_id="m1", text="hi", at=now)
    session.reply("one", at=now)
    session.reply("two", at=now)  # version 4: this save crosses the threshold
    append = log.append

    async def slow_append(*args: Any, **kwargs: Any) -> Any:
        session.reply("three", at=now)  # applied while the append is under way
        return await append(*args, **kwargs)

    log.append = slow_append  # type: ignore[method-assign]
    await repo.save(session)
    snapshot = await log.load_snapshot(str(session.id))
    assert snapshot is not None and snapshot.version == 4
    log.append = append  # type: ignore[method-assign]
    loaded = await repo.load(session.id)
    assert loaded.version == 4 and [m["text"] for m in loaded.history][-1] == "two"


async def test_a_snapshot_ahead_of_its_stream_is_ignored() -> None:
    from datetime import UTC, datetime

    from turnlog.contracts.events import ChannelRef, UserRef
    from turnlog.domain.session import Session
    from turnlog.services.adapters.memory.log import MemoryLog
    from turnlog.services.app import mapping
    from turnlog.services.app.sessions.repository import SessionRepository

    log = MemoryLog()
    repo = SessionRepository(log, snapshot_every=0)
    now = datetime.now(UTC)
    user, channel = UserRef(id="u"), ChannelRef()
    session = Session.start(uuid.uuid4(), app="a", user=user, channel=channel, at=now)
    session.receive_message(message_id="m1", text="hi", at=now)
    await repo.save(session)
    session.reply("never appended", at=now)  # as an earlier version could snapshot it
    await log.save_snapshot(mapping.take_snapshot(session, b"x" * 32))
    loaded = await repo.load(session.id)
    assert loaded.version == 2 and loaded.open_turn == "m1"
    loaded.reply("appended", at=now)
    await repo.save(loaded)  # the session goes on
