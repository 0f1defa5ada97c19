"""Partitioned inbound subjects on a real nats-server: the server stores each message
under the partition turnlog computes for it, a runtime taking a partition over gets what
the last owner left unacknowledged before anything newer, a message a producer put in the
wrong partition is dead-lettered, an inbound stream made without partitions gets them
after its backlog, without partitions a partitioned subject is refused, and an erased
user's messages are purged in their stored form."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

import turnlog
from tests.integration.conftest import Start
from tests.integration.test_bus_crashes import eventually
from turnlog.contracts import bus
from turnlog.contracts.events import UserRef
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.nats.consumers import (
    ensure_runtime_consumer,
    partition_durable,
    partitioned,
)
from turnlog.services.adapters.nats.partitioning import partition_of, transforms
from turnlog.services.adapters.nats.pull import PullLane
from turnlog.services.adapters.nats.purge import purge
from turnlog.services.adapters.nats.router import register
from turnlog.services.adapters.nats.streams import ensure_streams
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.app.erasure import Reach
from turnlog.services.bootstrap import serve


@pytest.fixture
async def nc(servers: Endpoints) -> NATS:
    connection = await nats.connect(servers.nats_url)
    if not transforms(connection):
        await connection.close()
        pytest.skip("this NATS server has no subject transforms (before 2.10)")
    yield connection
    await connection.close()


def message(session_id: str | None, text: str = "hi") -> bytes:
    inbound = bus.InboundMessage(
        message_id=uuid.uuid4().hex, session_id=session_id, user=UserRef(id="u"), text=text
    )
    return msgspec.json.encode(inbound)


async def test_the_server_stores_each_message_under_the_partition_turnlog_computes(
    nc: NATS, prefix: str
) -> None:
    js, subjects = nc.jetstream(), Subjects(prefix)
    await ensure_streams(js, subjects, partitioned=True)
    await ensure_runtime_consumer(js, subjects, "app", 2.0, partitions=True)  # keeps them
    assert await partitioned(js, subjects)
    tokens = [str(uuid.uuid4()) for _ in range(600)] + ["new", "x", "session-1"]
    for token in tokens:
        await js.publish(f"{prefix}.in.app.{token}", b"{}")
    stored = {}
    for seq in range(1, len(tokens) + 1):
        parts = (await js.get_msg(subjects.stream_in, seq)).subject.split(".")
        assert parts[:3] == [prefix, "in", "app"] and len(parts) == 5
        stored[parts[4]] = int(parts[3])
    assert stored == {token: partition_of(token) for token in tokens}
    assert len(set(stored.values())) == 16


async def owner_dies_mid_turn(nc: NATS, servers: Endpoints, prefix: str, durable: str) -> str:
    """A session of ``durable``'s partition whose first message an owner took and died
    with (never acked), and whose second message came after."""
    js, subjects = nc.jetstream(), Subjects(prefix)
    partition = int(durable.rsplit("-", 1)[1])
    session = next(s for s in iter(lambda: str(uuid.uuid4()), "") if partition_of(s) == partition)
    await js.publish(f"{prefix}.in.app.{session}", b"first")
    dying = await nats.connect(servers.nats_url)
    pulled = await dying.jetstream().pull_subscribe_bind(durable, subjects.stream_in)
    assert [m.data for m in await pulled.fetch(1, timeout=5)] == [b"first"]
    await dying.close()
    await js.publish(f"{prefix}.in.app.{session}", b"second")
    return session


async def test_a_new_owner_gets_what_a_dead_owner_left_unacked_before_newer_messages(
    nc: NATS, servers: Endpoints, prefix: str
) -> None:
    js, subjects = nc.jetstream(), Subjects(prefix)
    await ensure_streams(js, subjects, partitioned=True)
    await ensure_runtime_consumer(js, subjects, "app", 2.0, partitions=True)
    hasty, patient = (partition_durable(subjects, "app", n) for n in (3, 4))

    # An owner pulling at once would get the second message first: the first comes back
    # only once ack_wait has passed.
    await owner_dies_mid_turn(nc, servers, prefix, hasty)
    pulled = await js.pull_subscribe_bind(hasty, subjects.stream_in)
    assert [m.data for m in await pulled.fetch(1, timeout=5)] == [b"second"]

    await owner_dies_mid_turn(nc, servers, prefix, patient)
    handled: list[bytes] = []
    both = asyncio.Event()

    async def handle(msg: Msg) -> None:
        handled.append(msg.data)
        await msg.ack()
        if len(handled) == 2:
            both.set()

    lane = PullLane(nc, js, subjects.stream_in, patient, handle, ack_wait=2.0)
    pulling = asyncio.create_task(lane.run())
    try:
        await asyncio.wait_for(both.wait(), timeout=15)
    finally:
        lane.stop()
        await pulling
    assert handled == [b"first", b"second"]  # it waited for the first to come back
    info = await js.consumer_info(subjects.stream_in, patient)
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_a_message_a_producer_put_in_the_wrong_partition_is_dead_lettered(
    nc: NATS, start_serving: Start, servers: Endpoints, prefix: str, store: EventStore
) -> None:
    echo = turnlog.App("echo")

    @echo.message()
    async def on_message(session: turnlog.Session, msg: turnlog.Message) -> None:
        await session.reply(msg.text)

    await start_serving(echo)
    js, subjects = nc.jetstream(), Subjects(prefix)
    letters = await nc.subscribe(subjects.dlq("echo"))
    session = str(uuid.uuid4())
    n = partition_of(session)
    wrong = f"{prefix}.in.echo.{(n + 1) % 16}.{session}"
    await js.publish(wrong, message(session, "misplaced"))
    letter = msgspec.json.decode((await letters.next_msg(timeout=15)).data, type=bus.DeadLetter)
    assert (letter.reason, letter.subject, letter.session_id) == ("wrong_partition", wrong, session)
    assert f"partition {n}" in letter.detail
    assert await store.read_stream(session) == []  # not the session's own runtime's: no record

    await js.publish(f"{prefix}.in.echo.{n}.{session}", message(session, "placed"))
    await js.publish(f"{prefix}.in.echo.{session.upper()}", message(session.upper()))
    letter = msgspec.json.decode((await letters.next_msg(timeout=15)).data, type=bus.DeadLetter)
    assert letter.reason == "schema_violation" and "canonical" in letter.detail
    assert letter.subject == f"{prefix}.in.echo.{session.upper()}"  # as the producer sent it

    async def answered() -> bool:  # the one in the right partition
        return "session.turn_completed" in [r.type for r in await store.read_stream(session)]

    await eventually(answered)


async def test_an_inbound_stream_of_an_earlier_version_gets_its_partitions_after_its_backlog(
    nc: NATS, start_serving: Start, servers: Endpoints, prefix: str, store: EventStore
) -> None:
    js, subjects = nc.jetstream(), Subjects(prefix)
    await ensure_streams(js, subjects)  # as an earlier version made them: no partitions
    for app in ("echo", "other"):
        await ensure_runtime_consumer(js, subjects, app, 2.0)
        await register(js, subjects, app)
    session = str(uuid.uuid4())
    for text in ("m1", "m2", "m3"):  # waiting for the app's runtime, stored unpartitioned
        await js.publish(subjects.inbound("echo", session), message(session, text))
    assert not await partitioned(js, subjects)

    echo = turnlog.App("echo")

    @echo.message()
    async def on_message(s: turnlog.Session, msg: turnlog.Message) -> None:
        await s.reply(msg.text)

    await start_serving(echo)
    assert await partitioned(js, subjects)
    for n in range(16):  # made for every app ever served, before the stream had partitions
        await js.consumer_info(subjects.stream_in, partition_durable(subjects, "other", n))
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        assert (await client.session("echo", session).send_message("m4")).reply == "m4"
    finally:
        await client.close()
    texts = [
        msgspec.json.decode(r.payload)["text"]
        for r in await store.keyring.unseal(await store.read_stream(session))
        if r.type == "session.message_received"
    ]
    assert texts == ["m1", "m2", "m3", "m4"]


async def test_without_partitions_a_message_on_a_partitioned_subject_is_dead_lettered(
    start_serving: Start, servers: Endpoints, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serve, "transforms", lambda nc: False)  # as on NATS before 2.10
    echo = turnlog.App("echo")

    @echo.message()
    async def on_message(session: turnlog.Session, msg: turnlog.Message) -> None:
        await session.reply(msg.text)

    await start_serving(echo)
    nc = await nats.connect(servers.nats_url)
    try:
        subjects = Subjects(prefix)
        letters = await nc.subscribe(subjects.dlq("echo"))
        session = str(uuid.uuid4())
        subject = f"{prefix}.in.echo.{partition_of(session)}.{session}"
        await nc.jetstream().publish(subject, message(session))
        letter = msgspec.json.decode((await letters.next_msg(timeout=15)).data, type=bus.DeadLetter)
        assert (letter.reason, letter.subject) == ("bad_subject", subject)
        assert "has no partitions" in letter.detail
    finally:
        await nc.close()


async def test_erasure_purges_inbound_messages_stored_under_their_partitions(
    nc: NATS, prefix: str
) -> None:
    js, subjects = nc.jetstream(), Subjects(prefix)
    await ensure_streams(js, subjects, partitioned=True)
    await ensure_runtime_consumer(js, subjects, "diary", 2.0, partitions=True)  # keeps them
    theirs, others = str(uuid.uuid4()), str(uuid.uuid4())
    await js.publish(subjects.inbound("diary", theirs), message(theirs))
    first = bus.InboundMessage(message_id="m-new", user=UserRef(id="alice"), text="hello")
    await js.publish(subjects.inbound("diary", None), msgspec.json.encode(first))
    await js.publish(subjects.inbound("diary", others), message(others))
    reach = Reach(
        user_id="alice", sessions=(theirs,), streams={}, apps=("diary",), files=(),
        sealed_events=0, documents=0, unsealed_events=0,
    )  # fmt: skip
    purged = await purge(js, subjects, reach)
    assert (purged.inbound, purged.error) == (2, None)
    left = (await js.get_msg(subjects.stream_in, 3)).subject
    assert left == f"{prefix}.in.diary.{partition_of(others)}.{others}"
