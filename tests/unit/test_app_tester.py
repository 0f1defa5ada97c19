"""Apps run on the memory adapters with ``turnlog.testing.AppTester``: turns, data, tasks,
schedules, prompts, collections and integrations, with no server."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import turnlog
from turnlog.testing import AppTester, TesterError


def counter() -> turnlog.App:
    app = turnlog.App("counter")
    notes = app.collection("notes", scope="user")

    @app.message()
    async def on_message(session: turnlog.Session, msg: turnlog.Message) -> None:
        if msg.text == "count":
            session.data["count"] = session.data.get("count", 0) + 1
            await session.reply(f"count={session.data['count']}")
        elif msg.text.startswith("note "):
            await notes.insert_one({"text": msg.text[5:], "at": session.now().isoformat()})
            await session.reply(f"{await notes.count({})} notes")
        elif msg.text == "notes":
            found = await notes.find({}, sort=[("text", 1)])
            await session.reply(", ".join(n["text"] for n in found))
        elif msg.text == "fail":
            raise RuntimeError("boom")
        else:
            await session.reply(f"echo {msg.text}")

    return app


async def test_a_turn_replies_and_records_data_and_events() -> None:
    async with AppTester(counter()) as t:
        s = t.session(user={"id": "u1"})
        first = await s.send_message("count")
        second = await s.send_message("count")
        assert (first.reply, second.reply) == ("count=1", "count=2")
        assert second.outcome == "ok" and s.data == {"count": 2}
        assert [e.type for e in second.events] == [
            "session.message_received",
            "session.reply_sent",
            "session.data_set",
            "session.turn_completed",
        ]
        assert [e.type for e in s.events][:2] == ["session.started", "session.message_received"]
        assert all(e.stream_id == s.id for e in s.events)


async def test_sessions_are_apart_and_a_failing_handler_is_recorded_failed() -> None:
    async with AppTester(counter()) as t:
        a, b = t.session(user={"id": "u1"}), t.session(user={"id": "u2"})
        await a.send_message("count")
        failed = await b.send_message("fail")
        assert failed.outcome == "failed" and "boom" not in failed.reply
        assert a.data == {"count": 1} and b.data == {}
        done = next(e for e in failed.events if e.type == "session.turn_completed")
        assert done.payload["error_type"] == "RuntimeError"


async def test_collections_are_per_user_and_sorted() -> None:
    async with AppTester(counter()) as t:
        a, b = t.session(user={"id": "u1"}), t.session(user={"id": "u2"})
        assert (await a.send_message("note pear")).reply == "1 notes"
        assert (await a.send_message("note apple")).reply == "2 notes"
        assert (await b.send_message("note fig")).reply == "1 notes"
        assert (await a.send_message("notes")).reply == "apple, pear"
        written = [e for e in t.log.events if e.type == "document.inserted"]
        assert len(written) == 3


async def test_the_clock_is_fixed_until_the_test_moves_it() -> None:
    start = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
    async with AppTester(counter(), now=start) as t:
        s = t.session(user={"id": "u1"})
        await s.send_message("note a")
        t.clock.advance(minutes=5)
        await s.send_message("note b")
        times = [e.recorded_at for e in s.events if e.type == "session.message_received"]
        assert times == [
            "2030-05-01T12:00:00.000000+00:00",
            (start + timedelta(minutes=5)).isoformat(timespec="microseconds"),
        ]
        now_effects = [e.payload for e in s.events if e.type == "session.effect_recorded"]
        assert [p["result"] for p in now_effects] == [
            "2030-05-01T12:00:00.000000+00:00",
            "2030-05-01T12:05:00.000000+00:00",
        ]


def tasks_app() -> turnlog.App:
    app = turnlog.App("worker")
    attempts: list[int] = []

    @app.task(retries=1)
    async def add(session: turnlog.TaskSession, a: int, b: int) -> int:
        run = turnlog.current_task()
        attempts.append(run.attempt)
        if run.attempt == 1 and a < 0:
            raise ValueError("first attempts of negative sums fail")
        await session.reply(f"sum {a + b}")
        return a + b

    @app.message()
    async def on_message(session: turnlog.Session, msg: turnlog.Message) -> None:
        a, b = (int(x) for x in msg.text.split())
        handle = await add.submit(session=session, a=a, b=b)
        await session.reply(f"submitted {handle.task_id[:4] and 'ok'}")

    return app


async def test_submitted_tasks_run_when_the_test_runs_them() -> None:
    async with AppTester(tasks_app()) as t:
        s = t.session(user={"id": "u1"})
        assert (await s.send_message("2 3")).reply == "submitted ok"
        await s.send_message("-1 5")
        assert "sum 5" not in [e.payload.get("text") for e in s.events]
        statuses = await t.run_tasks()
        assert [(x.status, x.result, x.attempts) for x in statuses] == [
            ("completed", 5, 1),
            ("completed", 4, 2),
        ]
        replies = [e.payload["text"] for e in s.events if e.type == "session.reply_sent"]
        assert replies[-2:] == ["sum 5", "sum 4"]
        assert await t.run_tasks() == []


def scheduled_app() -> turnlog.App:
    app = turnlog.App("ticker")
    ticks = app.collection("ticks", scope="app")

    @app.schedule("*/15 * * * *")
    async def every_quarter(session: turnlog.ScheduledSession) -> None:
        await ticks.insert_one({"tick": session.tick.isoformat()})

    @app.message()
    async def on_message(session: turnlog.Session, msg: turnlog.Message) -> None:
        found = await ticks.find({}, sort="tick")
        await session.reply(" ".join(t["tick"][11:16] for t in found))

    return app


async def test_schedules_fire_as_the_clock_passes_their_ticks() -> None:
    start = datetime(2030, 1, 1, 9, 5, tzinfo=UTC)
    async with AppTester(scheduled_app(), now=start) as t:
        assert await t.run_schedules() == []  # 09:00 was before the test began
        t.clock.advance(minutes=10)
        assert await t.run_schedules() == [
            "schedule:ticker:every_quarter@2030-01-01T09:15:00+00:00"
        ]
        assert await t.run_schedules() == []  # that tick has run
        t.clock.advance(hours=1)  # 09:30 .. 10:15 passed: only the latest fires
        assert len(await t.run_schedules()) == 1
        s = t.session(user={"id": "u1"})
        assert (await s.send_message("ticks")).reply == "09:15 10:15"


def prompting_app(tmp_path: Path) -> turnlog.App:
    app = turnlog.App("prompts")

    @app.message()
    async def on_message(session: turnlog.Session, msg: turnlog.Message) -> None:
        if msg.text == "upload":
            upload = await session.prompt_file("Send a CSV", accept=".csv", timeout=30)
            saved = await upload.download(tmp_path)
            await session.reply(f"got {upload.name}: {saved.read_text().count(chr(10))} lines")
        elif msg.text == "github":
            try:
                creds = await session.prompt_integration("github", reason="to read issues")
                await session.reply(f"token {creds['token'][:3]}")
            except turnlog.IntegrationDeclined:
                await session.reply("declined")
        else:
            await session.reply(f"echo {msg.text}")

    return app


async def test_a_prompt_hands_the_round_back_and_goes_on_when_answered(tmp_path: Path) -> None:
    async with AppTester(prompting_app(tmp_path)) as t:
        s = t.session(user={"id": "u1"})
        waiting = await s.send_message("upload")
        assert waiting.outcome == "" and waiting.prompt is not None
        assert waiting.prompt["message"] == "Send a CSV"
        with pytest.raises(TesterError, match="waits on a prompt"):
            await s.send_message("meanwhile")
        with pytest.raises(TesterError, match=r"accepts \.csv, not a\.png"):
            await s.upload(waiting.prompt["prompt_id"], {"name": "a.png", "data": b"x"})
        done = await s.upload(waiting.prompt["prompt_id"], {"name": "a.csv", "data": b"a\nb\n"})
        assert done.outcome == "ok" and done.reply == "got a.csv: 2 lines"
        assert (tmp_path / "a.csv").read_bytes() == b"a\nb\n"
        assert "session.prompt_received" in [e.type for e in done.events]


async def test_an_integration_prompt_is_answered_by_connecting_or_declining(
    tmp_path: Path,
) -> None:
    async with AppTester(prompting_app(tmp_path)) as t:
        s = t.session(user={"id": "u1"})
        first = await s.send_message("github")
        assert first.prompt is not None and first.prompt["integration"] == "github"
        assert (await s.decline(first.prompt["prompt_id"])).reply == "declined"
        second = await s.send_message("github")
        await t.connect_integration("u1", "github", {"token": "ghp_secret"})
        assert (await s.wait()).reply == "token ghp"
        assert second.prompt is not None
        assert (await s.send_message("github")).reply == "token ghp"  # connected now


async def test_session_vars_and_stop() -> None:
    async with AppTester(counter()) as t:
        s = t.session(user={"id": "u1"})
        await s.send_message("count")
        assert await s.update_session_var({"count": 10, "plan": "pro"}) == ["count", "plan"]
        assert (await s.send_message("count")).reply == "count=11"
        assert await s.stop() is True
        assert s.events[-1].type == "session.ended"
        with pytest.raises(Exception, match="ended"):
            await s.send_message("count")


def streaming_app() -> turnlog.App:
    app = turnlog.App("streamer")

    @app.message()
    async def on_message(session: turnlog.Session, msg: turnlog.Message) -> None:
        if msg.text == "history":
            await session.reply(" | ".join(f"{m.sender}:{m.text}" for m in session.history))
            return
        async with session.stream_reply() as reply:
            for word in msg.text.split():
                reply.write(word + " ")
        await session.show(turnlog.Block(type="card", payload={"words": len(msg.text.split())}))

    return app


async def test_a_streamed_reply_is_delivered_in_chunks_and_recorded_whole() -> None:
    async with AppTester(streaming_app()) as t:
        s = t.session(user={"id": "u1"})
        r = await s.send_message("one two three")
        assert r.reply == "one two three "
        kinds = [type(item).__name__ for item in s.delivered]
        assert kinds.count("Chunk") == 3 and kinds[-2:] == ["Reply", "BlockView"]
        shown = next(e for e in r.events if e.type == "session.block_shown")
        assert shown.payload["payload"] == {"words": 3}
        history = await s.send_message("history")
        assert history.reply == "user:one two three | app:one two three "


async def test_a_task_cancelled_before_it_runs_ends_cancelled() -> None:
    app = turnlog.App("cancels")

    @app.task
    async def never(session: turnlog.TaskSession) -> None:
        raise AssertionError("a cancelled task does not run")

    @app.message()
    async def on_message(session: turnlog.Session, msg: turnlog.Message) -> None:
        handle = await never.submit(session=session)
        assert await handle.cancel("changed my mind") is True
        await session.reply((await handle.status()).status)

    async with AppTester(app) as t:
        s = t.session(user={"id": "u1"})
        assert (await s.send_message("go")).reply == "cancelled"
        [status] = await t.run_tasks()
        assert (status.status, status.attempts) == ("cancelled", 0)


async def test_a_failing_scheduled_run_is_recorded_failed_and_the_next_tick_runs() -> None:
    app = turnlog.App("flaky")
    calls: list[str] = []

    @app.schedule("0 * * * *")
    async def hourly(session: turnlog.ScheduledSession) -> None:
        calls.append(session.tick.isoformat())
        if len(calls) == 1:
            raise RuntimeError("first run breaks")

    async with AppTester(app, now=datetime(2030, 1, 1, 0, 30, tzinfo=UTC)) as t:
        t.clock.advance(hours=1)
        await t.run_schedules()
        t.clock.advance(hours=1)
        await t.run_schedules()
        assert calls == ["2030-01-01T01:00:00+00:00", "2030-01-01T02:00:00+00:00"]
        stream = [e for e in t.log.events if e.stream_id.startswith("schedule:")]
        done = [json.loads(e.payload) for e in stream if e.type == "schedule.completed"]
        assert [(d["outcome"], d["error_type"]) for d in done] == [
            ("failed", "RuntimeError"),
            ("ok", None),
        ]


async def test_a_turn_that_never_ends_is_given_up_on_clearly() -> None:
    app = turnlog.App("stuck")

    @app.message()
    async def on_message(session: turnlog.Session, msg: turnlog.Message) -> None:
        await asyncio.Event().wait()

    async with AppTester(app, turn_timeout=0.2) as t:
        s = t.session(user={"id": "u1"})
        with pytest.raises(TesterError, match=r"neither completed nor waited .* 0\.2 s"):
            await s.send_message("hello")
