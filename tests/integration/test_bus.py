"""The NATS bus with a real nats-server: producers, dedupe, dead letters, control."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

import msgspec
import nats

import turnlog
from tests.integration.conftest import Start
from turnlog.contracts import bus
from turnlog.contracts.events import UserRef
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.sdk.loader import load_app

NOTES = Path(__file__).resolve().parents[2] / "examples" / "notes.py"


async def types_of(store: EventStore, session_id: str) -> list[str]:
    return [r.type for r in await store.read_stream(session_id)]


async def test_a_producer_sends_three_messages_and_gets_the_replies(
    start_serving: Start, servers: Endpoints, prefix: str, store: EventStore
) -> None:
    await start_serving(load_app(NOTES))
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        session = client.session("notes", user={"id": "u1", "email": "u1@example.com"})
        seen: list[Any] = []
        replies = []
        for text in ("remember buy coffee", "remember send proposal", "notes"):
            round_ = await session.send_message(text, on_event=seen.append)
            assert round_.outcome == "ok"
            replies.append(round_.reply)
        assert replies == [
            "Noted: buy coffee (1 in total)",
            "Noted: send proposal (2 in total)",
            "1. buy coffee\n2. send proposal",
        ]
        assert [e.type for e in round_.events] == [
            "session.message_received",
            "session.reply_sent",
            "session.turn_completed",
        ]
        assert bus.LiveReply(session_id=session.id, text=replies[-1]) in seen
        assert any(isinstance(e, bus.EventEnvelope) for e in seen)
        first = (await store.keyring.unseal(await store.read_stream(session.id)))[0]
        assert first.type == "session.started" and b'"email":"u1@example.com"' in first.payload
    finally:
        await client.close()


async def test_the_same_message_id_twice_runs_one_turn(
    start_serving: Start, servers: Endpoints, prefix: str, store: EventStore
) -> None:
    await start_serving(load_app(NOTES))
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        session = client.session("notes")
        await session.send_message("remember once")
        twice = bus.InboundMessage(
            message_id="dup-1", session_id=session.id, user=UserRef(id="u"), text="remember twice"
        )
        subject = Subjects(prefix).inbound("notes", session.id)
        for _ in range(2):  # no Nats-Msg-Id: JetStream keeps both, turnlog must not
            await client.js.publish(subject, msgspec.json.encode(twice))
        last = await session.send_message("notes")  # queued behind both copies
        assert last.reply == "1. once\n2. twice"
        types = await types_of(store, session.id)
        assert types.count("session.message_received") == 3
    finally:
        await client.close()


async def test_malformed_messages_land_in_the_dead_letter_subject(
    start_serving: Start, servers: Endpoints, prefix: str, store: EventStore
) -> None:
    await start_serving(load_app(NOTES))
    subjects = Subjects(prefix)
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    letters: asyncio.Queue[bus.DeadLetter] = asyncio.Queue()

    async def collect(msg: Any) -> None:
        await letters.put(msgspec.json.decode(msg.data, type=bus.DeadLetter))

    try:
        await client.nc.subscribe(subjects.dlq("notes"), cb=collect)
        session = client.session("notes")
        await session.send_message("remember x")
        cases = [
            (b"{not json", "undecodable"),
            (
                b'{"kind":"message","message_id":"m-x","session_id":"%s","user":{"id":"u"}}'
                % session.id.encode(),
                "schema_violation",
            ),
            (
                b'{"kind":"message","message_id":"m-y","session_id":"%s","user":{"id":"u"},'
                b'"text":"hi","extra":1}' % session.id.encode(),
                "schema_violation",
            ),
            (b"x" * (300 * 1024), "too_large"),
        ]
        for data, _ in cases:
            await client.js.publish(subjects.inbound("notes", session.id), data)
        for data, reason in cases:
            letter = await asyncio.wait_for(letters.get(), timeout=10)
            assert letter.reason == reason, letter
            assert letter.original == data and letter.session_id == session.id
            assert letter.subject == subjects.inbound("notes", session.id)
        records = await store.read_stream(session.id)
        rejected = [
            msgspec.json.decode(r.payload) for r in records if r.type == "session.input_rejected"
        ]
        assert [r["reason"] for r in rejected] == [
            "undecodable",
            "schema_violation",
            "schema_violation",
            "too_large",
        ]
        assert "Object missing required field `text`" in rejected[1]["detail"]
        assert (await session.send_message("notes")).reply == "1. x"  # still usable
    finally:
        await client.close()


async def test_messages_for_an_app_nobody_serves_are_dead_lettered(
    start_serving: Start, servers: Endpoints, prefix: str
) -> None:
    await start_serving(load_app(NOTES))
    subjects = Subjects(prefix)
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        letters = await client.nc.subscribe(subjects.dlq("ghost"))
        data = msgspec.json.encode(
            bus.InboundMessage(message_id="g-1", user=UserRef(id="u"), text="anyone?")
        )
        await client.js.publish(subjects.inbound("ghost", None), data)
        letter = msgspec.json.decode((await letters.next_msg(timeout=10)).data, type=bus.DeadLetter)
        assert letter.reason == "unknown_app" and letter.app == "ghost"
        assert letter.original == data
        notes = client.session("notes")  # a served app is not affected
        assert (await notes.send_message("notes")).outcome == "ok"
    finally:
        await client.close()


async def test_producer_sets_session_vars_and_stops_the_session(
    start_serving: Start, servers: Endpoints, prefix: str, store: EventStore, tmp_path: Path
) -> None:
    app = turnlog.App("vars")
    exits: list[str] = []

    @app.exit()
    def leave(session: turnlog.Session) -> None:
        exits.append(session.id)

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        await session.reply(f"plan={session.data.get('plan')}")

    await start_serving(app)
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        session = client.session("vars")
        assert (await session.send_message("hi")).reply == "plan=None"
        await session.update_session_var({"plan": "pro"})
        assert (await session.send_message("again")).reply == "plan=pro"
        await session.stop()
        assert exits == [session.id]
        records = await store.read_stream(session.id)
        data = [r for r in records if r.type == "session.data_set"]
        assert len(data) == 1 and data[0].actor == "producer:producer"
        assert records[-1].type == "session.ended"
        late = client.session("vars", session_id=session.id)
        try:
            await late.send_message("anyone?", timeout=5)
        except turnlog.ClientError as e:
            assert "session_ended" in str(e)
        else:
            raise AssertionError("a message to an ended session was accepted")
    finally:
        await client.close()


async def test_contracts_round_trip_through_nats_untouched(servers: Endpoints) -> None:
    nc = await nats.connect(servers.nats_url)
    try:
        subject = f"t{uuid.uuid4().hex[:8]}.probe"
        sub = await nc.subscribe(subject)
        message = bus.InboundMessage(message_id="m1", user=UserRef(id="u"), text="héllo ✓")
        await nc.publish(subject, msgspec.json.encode(message))
        got = await sub.next_msg(timeout=5)
        assert msgspec.json.decode(got.data, type=bus.Inbound) == message
    finally:
        await nc.close()


async def test_two_runtimes_of_one_app_share_a_prefix_one_consumes_the_other_takes_over(
    start_serving: Start, servers: Endpoints, prefix: str, store: EventStore
) -> None:
    first = await start_serving(load_app(NOTES))
    second = await start_serving(load_app(NOTES), relay=False)  # stands by, does not fail
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        session = client.session("notes", user={"id": "u1"})
        assert (await session.send_message("remember a")).reply == "Noted: a (1 in total)"
        assert not second.done()
        first.cancel()  # the active runtime stops: the standby takes over its messages
        with contextlib.suppress(asyncio.CancelledError):
            await first
        await start_serving(None)  # a relay again, for the producer's round trips
        round_ = await session.send_message("remember b", timeout=30)
        assert round_.reply == "Noted: b (2 in total)"
        types = await types_of(store, session.id)
        assert types.count("session.turn_completed") == 2
        assert "session.turn_interrupted" not in types
    finally:
        await client.close()
