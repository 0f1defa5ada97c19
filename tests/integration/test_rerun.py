"""Deterministic re-execution: each turn's handler run again on the recorded inputs and
effects, with nothing written and nothing called outside, compared with the record."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import turnlog
from tests.helpers import converse, inbound
from turnlog.contracts.query import RerunReport
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.app.log.errors import StoreError
from turnlog.services.app.log.records import RecordedEvent
from turnlog.services.app.rerun import rerun_session
from turnlog.services.app.sessions.outbound import NoDelivery
from turnlog.services.app.sessions.repository import SessionRepository
from turnlog.services.bootstrap.wiring import Wiring
from turnlog.services.sdk.loader import load_app

ALICE = turnlog.UserInfo(id="alice")

ORACLE = """
import random

import turnlog

app = turnlog.App("oracle")


async def model(prompt):  # stands for a model call: a different answer each time
    return {"answer": random.choice(["yes", "no", "maybe", "ask again"]), "prompt": prompt}


async def words():  # stands for a model stream
    for _ in range(3):
        yield random.choice(["sun ", "rain ", "snow "])


@app.message()
async def handle(session, msg):
    if msg.text == "bye":
        await session.reply(f"Goodbye, {session.user.id}")
        return
    if msg.text == "stream":
        await session.stream_reply_from(words())
        return
    if msg.text == "fail":
        raise ValueError(f"no answer after {len(session.history)} messages")
    out = await session.effect("model", model, msg.text)
    session.data["last"] = out["answer"]
    session.data["asked"] = session.data.get("asked", 0) + 1
    stamp = session.now()
    card = {"id": session.uuid(), "at": stamp.isoformat(), "n": session.data["asked"]}
    await session.show(turnlog.Block("card", card, id="last"))
    await session.reply(f"The oracle says {out['answer']} ({len(session.history)} before)")
"""

CONVERSATION = ["will it rain?", "stream", "bye", "fail", "and tomorrow?"]


async def recorded(store: EventStore, sid: uuid.UUID) -> list[RecordedEvent]:
    """The session's events with their personal fields unsealed."""
    return await store.keyring.unseal(await store.read_stream(str(sid)))


async def rerun(store: EventStore, sid: uuid.UUID, app: turnlog.App) -> RerunReport:
    records = await recorded(store, sid)
    turns = [r.correlation_id for r in records if r.type == "session.message_received"]
    documents = await store.read_documents_written_by([t for t in turns if t])
    return await rerun_session(records, app, documents=await store.keyring.unseal(documents))


@pytest.fixture
def oracle(tmp_path: Path) -> Path:
    path = tmp_path / "oracle.py"
    path.write_text(ORACLE)
    return path


def changed(path: Path, old: str, new: str) -> Path:
    source = path.read_text()
    assert old in source
    copy = path.with_name(f"changed_{uuid.uuid4().hex[:6]}.py")
    copy.write_text(source.replace(old, new))
    return copy


def turnlog_(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnlog", *args],
        env=env, text=True, capture_output=True, timeout=120, check=False,
    )  # fmt: skip


async def test_an_unchanged_app_is_identical_and_a_changed_reply_diverges_where_it_changed(
    store: EventStore, oracle: Path, cli_env: dict[str, str]
) -> None:
    sid = await converse(store, load_app(oracle), CONVERSATION)
    records = await recorded(store, sid)
    types = [r.type for r in records]
    assert types.count("session.effect_recorded") == 2 * 3 + 1  # model, now, uuid; a stream
    assert "session.turn_completed" in types

    same = turnlog_(cli_env, "replay", str(sid), "--rerun", str(oracle))
    assert same.returncode == 0, same.stderr
    assert same.stdout.strip().endswith("5 of 5 turns re-run: identical"), same.stdout
    report = json.loads(
        turnlog_(cli_env, "replay", str(sid), "--rerun", str(oracle), "--json").stdout
    )
    assert report["result"] == "identical" and report["rerun"] == 5 and report["divergence"] is None
    assert len(await recorded(store, sid)) == len(records)  # nothing was written

    # The third turn ("bye") now answers differently: its reply is its event 1.
    edited = changed(oracle, 'f"Goodbye, {session.user.id}"', 'f"See you, {session.user.id}"')
    out = turnlog_(cli_env, "replay", str(sid), "--rerun", str(edited), "--json")
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    found = report["divergence"]
    bye = next(r for r in records if r.type == "session.message_received" and b'"bye"' in r.payload)
    assert report["result"] == "diverged" and report["rerun"] == 3
    assert (found["turn"], found["message_id"], found["event_index"]) == (3, bye.correlation_id, 1)
    assert found["version"] == bye.version + 1
    assert found["expected"] == {
        "type": "session.reply_sent",
        "text": "Goodbye, alice",
        "streamed": False,
        "interrupted": False,
    }
    assert found["actual"]["text"] == "See you, alice"
    text = turnlog_(cli_env, "replay", str(sid), "--rerun", str(edited))
    assert text.returncode == 1
    assert f"diverged at turn 3 (message {bye.correlation_id}), event 1" in text.stdout
    assert 'expected: session.reply_sent {"text":"Goodbye, alice"' in text.stdout
    assert 'actual:   session.reply_sent {"text":"See you, alice"' in text.stdout


async def test_changes_in_data_blocks_and_errors_are_found_too(
    store: EventStore, oracle: Path
) -> None:
    sid = await converse(store, load_app(oracle), CONVERSATION)
    data = await rerun(
        store, sid, load_app(changed(oracle, '.get("asked", 0) + 1', '.get("asked", 0) + 2'))
    )
    assert data.result == "diverged" and data.divergence is not None
    # Events 1-3 are the effects (model, now, uuid); the card shows the count first.
    assert (data.divergence.turn, data.divergence.event_index) == (1, 4)
    assert data.divergence.expected is not None and data.divergence.actual is not None
    assert data.divergence.expected["type"] == "session.block_shown"
    assert data.divergence.expected["payload"]["n"] == 1
    assert data.divergence.actual["payload"]["n"] == 2

    error = await rerun(store, sid, load_app(changed(oracle, "no answer after", "none after")))
    assert error.result == "diverged" and error.divergence is not None
    assert error.divergence.turn == 4 and error.divergence.reason == "a different event"
    assert error.divergence.expected is not None and error.divergence.actual is not None
    assert error.divergence.expected["type"] == "session.turn_completed"
    assert error.divergence.expected["error_message"] == "no answer after 6 messages"
    assert error.divergence.actual["error_message"] == "none after 6 messages"

    # An effect asked for under another name cannot be served from the record.
    renamed = await rerun(store, sid, load_app(changed(oracle, '"model", model', '"llm", model')))
    assert renamed.result == "diverged" and renamed.divergence is not None
    assert renamed.divergence.reason == "effect 'llm' where effect 'model' was recorded"
    assert renamed.divergence.turn == 1 and renamed.divergence.event_index == 1

    # A stream that now ends early: one event fewer (the stream's recorded text is reused,
    # so a different stream shows only by what the handler does around it).
    fewer = await rerun(
        store,
        sid,
        load_app(changed(oracle, 'if msg.text == "bye":', 'if msg.text in ("bye", "stream"):')),
    )
    assert fewer.result == "diverged" and fewer.divergence is not None
    assert fewer.divergence.turn == 2


async def test_a_handler_that_reaches_the_outside_is_reported_as_non_deterministic(
    store: EventStore, cli_env: dict[str, str], tmp_path: Path
) -> None:
    answers = iter(range(100))

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        body = str(next(answers)).encode()
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    app_file = tmp_path / "quotes.py"
    app_file.write_text(
        "import asyncio, turnlog\n"
        "app = turnlog.App('quotes')\n"
        "@app.message()\n"
        "async def handle(session, msg):\n"
        f"    reader, writer = await asyncio.open_connection('127.0.0.1', {port})\n"
        "    writer.write(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
        "    body = (await reader.read()).split(b'\\r\\n\\r\\n')[1].decode()\n"
        "    writer.close()\n"
        "    await session.reply(f'quote {body}')\n"
    )
    try:
        sid = await converse(store, load_app(app_file), ["price?", "again?"])
        history = [r.payload for r in await recorded(store, sid) if r.type == "session.reply_sent"]
        assert history == [b'{"text":"quote 0","streamed":false,"interrupted":false}',
                           b'{"text":"quote 1","streamed":false,"interrupted":false}']  # fmt: skip

        out = turnlog_(cli_env, "replay", str(sid), "--rerun", str(app_file), "--json")
        assert out.returncode == 1, out.stderr
        assert "Traceback" not in out.stderr
        report = json.loads(out.stdout)
        assert report["result"] == "non_deterministic"
        found = report["divergence"]
        assert found["turn"] == 1 and found["event_index"] == 1
        assert found["reason"] == (
            f"the handler reached the outside without session.effect: connect to 127.0.0.1:{port}"
        )
        assert found["expected"]["text"] == "quote 0" and found["actual"] is None
        text = turnlog_(cli_env, "replay", str(sid), "--rerun", str(app_file))
        assert text.returncode == 1 and "non-deterministic at turn 1" in text.stdout

        # Blocking calls (here in a thread), and handlers that swallow every error, are
        # caught too.
        def fetch() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                return str(r.read().decode())

        app = turnlog.App("quotes")

        @app.message()
        async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
            try:
                body = await asyncio.to_thread(fetch)
            except BaseException:  # the point: nothing the handler does hides it
                body = "?"
            await session.reply(f"quote {body}")

        sid = await converse(store, app, ["price?"])
        assert b"quote ?" not in (await recorded(store, sid))[2].payload
        report_ = await rerun(store, sid, app)
        assert report_.result == "non_deterministic" and report_.divergence is not None
        assert f"127.0.0.1:{port}" in report_.divergence.reason

        # The same call through session.effect re-runs identically, without the server.
        app = turnlog.App("quotes")

        @app.message()
        async def handle_(session: turnlog.Session, msg: turnlog.Message) -> None:
            await session.reply(f"quote {await session.effect('quote', asyncio.to_thread, fetch)}")

        sid = await converse(store, app, ["price?", "again?"])
    finally:
        server.close()
        await server.wait_closed()
    report_ = await rerun(store, sid, app)
    assert report_.result == "identical" and report_.rerun == 2


async def test_what_cannot_be_rerun_is_said_and_cut_off_turns_are_skipped(
    store: EventStore,
) -> None:
    app = turnlog.App("notes")
    notes = app.collection("notes", scope="user")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        if msg.text.startswith("note "):
            await notes.insert_one({"text": msg.text[5:]})
        await session.reply(f"ok {msg.text}")

    sid = await converse(store, app, ["hello", "note milk", "bye"])
    report = await rerun(store, sid, app)
    assert report.result == "not_rerunnable" and report.divergence is not None
    assert report.divergence.turn == 2
    assert report.divergence.reason == "collection 'notes' (session.db) is not re-run"

    # A turn a crash cut off, not resumed, has no outcome to compare: it is skipped.
    plain = turnlog.App("plain", resume_turns=False)
    plain.message()(lambda session, msg: session.reply(f"ok {msg.text}"))
    sid = await converse(store, plain, ["hello"])
    repo = SessionRepository(store)
    agg = await repo.load(sid)
    agg.receive_message(message_id=uuid.uuid4().hex, text="lost", at=datetime.now(UTC))
    await repo.save(agg)
    host = Wiring.postgres(store).host(plain, NoDelivery())
    try:
        await host.handle(inbound("after", ALICE, sid))
    finally:
        await host.stop()
    types = [r.type for r in await recorded(store, sid)]
    assert "session.turn_interrupted" in types
    report = await rerun(store, sid, plain)
    assert (report.turns, report.rerun, report.skipped) == (3, 2, 1)
    assert report.result == "identical"


async def test_a_resumed_turn_reruns_as_the_one_run_its_attempts_make(
    store: EventStore,
) -> None:
    app = turnlog.App("resumed")
    cut = asyncio.Event()

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        ticket = session.uuid()
        await session.reply(f"first {ticket}")
        await session.flush()
        if not cut.is_set():
            cut.set()
            await asyncio.Event().wait()  # cut off here, once
        await session.reply(f"second {ticket}")
        session.data["ticket"] = ticket

    sid = uuid.uuid4()
    first = Wiring.postgres(store).host(app, NoDelivery())
    turn = asyncio.create_task(first.handle(inbound("hello", ALICE, sid)))
    await asyncio.wait_for(cut.wait(), 10)
    turn.cancel()
    with pytest.raises(asyncio.CancelledError):
        await turn
    await converse_in(store, app, sid, "again")  # resumes the cut-off turn first
    types = [r.type for r in await recorded(store, sid)]
    assert types.count("session.turn_resumed") == 1
    report = await rerun(store, sid, app)
    assert (report.turns, report.rerun, report.skipped) == (2, 2, 0)
    assert report.result == "identical", report.divergence


async def converse_in(store: EventStore, app: turnlog.App, sid: uuid.UUID, text: str) -> None:
    host = Wiring.postgres(store).host(app, NoDelivery())
    try:
        await host.handle(inbound(text, ALICE, sid))
    finally:
        await host.stop()


async def test_a_stream_is_not_opened_again(store: EventStore) -> None:
    opened: list[str] = []
    app = turnlog.App("streams")

    async def model_stream(prompt: str) -> AsyncIterator[str]:
        opened.append(prompt)
        yield f"thinking about {prompt}. "
        yield "done"
        if prompt == "boom":
            raise ConnectionResetError("the model went away")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        text = await session.stream_reply_from(model_stream(msg.text))
        session.data["chars"] = len(text)

    sid = await converse(store, app, ["rain", "boom"])
    assert opened == ["rain", "boom"]
    effects = [
        json.loads(r.payload)
        for r in await recorded(store, sid)
        if r.type == "session.effect_recorded"
    ]
    assert effects == [
        {"name": "stream_reply_from", "result": {"text": "thinking about rain. done"}},
        {
            "name": "stream_reply_from",
            "result": {
                "text": "thinking about boom. done",
                "error_type": "ConnectionResetError",
                "error": "the model went away",
            },
        },
    ]
    report = await rerun(store, sid, app)
    assert report.result == "identical" and report.rerun == 2
    assert opened == ["rain", "boom"]  # the re-run used the record, not the model


async def test_failed_effects_rerun_and_what_a_rerun_cannot_know_is_said(
    store: EventStore,
) -> None:
    app = turnlog.App("flaky")

    def model(prompt: str) -> str:
        raise ConnectionError(f"model down for {prompt}")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        if msg.text == "github":
            await session.reply(f"github: {'github' in session.integrations}")
            return
        try:
            await session.effect("model", model, msg.text)
        except ConnectionError as e:
            await session.reply(f"sorry: {e}")

    sid = await converse(store, app, ["hi"])
    effects = [
        json.loads(r.payload)
        for r in await recorded(store, sid)
        if r.type == "session.effect_recorded"
    ]
    failed = {"type": "ConnectionError", "error": "model down for hi"}
    assert effects == [{"name": "model", "result": {"$failed": failed}}]
    report = await rerun(store, sid, app)
    assert report.result == "identical", report.divergence

    other = turnlog.App("other")
    other.message()(lambda session, msg: None)
    with pytest.raises(StoreError, match="is a session of app 'flaky', not 'other'"):
        await rerun(store, sid, other)

    sid = await converse(store, app, ["github"])
    report = await rerun(store, sid, app)
    assert report.result == "not_rerunnable" and report.divergence is not None
    assert report.divergence.reason == "session.integrations is not re-run"
