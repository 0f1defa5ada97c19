"""Killing turnlog processes with SIGKILL: nothing lost, nothing run twice."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import nats
import pytest
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

import turnlog
from turnlog.contracts import bus
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.app.log.records import NewEvent

SLOW = Path(__file__).resolve().parents[1] / "apps" / "slow.py"


def spawn(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "turnlog", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def env_for(cli_env: dict[str, str], prefix: str, **extra: str) -> dict[str, str]:
    return cli_env | {"TURNLOG_SUBJECT_PREFIX": prefix, "TURNLOG_ACK_WAIT": "2"} | extra


async def eventually(check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


def ran(marker: Path) -> list[str]:
    """The texts the slow app's handler ran for, in order (each attempt)."""
    return [line.split(" ", 1)[1] for line in marker.read_text().split("\n") if line]


async def types_of(store: EventStore, session_id: str) -> list[str]:
    return [r.type for r in await store.read_stream(session_id)]


async def kill_mid_turn(
    env: dict[str, str], servers: Endpoints, prefix: str
) -> tuple[turnlog.ClientSession, turnlog.Client]:
    """A session of the slow app with one turn done and the next cut off by a SIGKILL of
    its runtime while the handler works (its notification is out)."""
    runtime = spawn(env, "run", str(SLOW))
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        session = client.session("slow")
        assert (await session.send_message("hello", timeout=60)).reply == "done hello"
        working = asyncio.Event()
        pending = asyncio.create_task(
            session.send_message(
                "slow",
                timeout=120,
                on_event=lambda e: working.set() if isinstance(e, bus.LiveNotification) else None,
            )
        )
        await asyncio.wait_for(working.wait(), timeout=30)  # the handler is mid-turn
    finally:
        runtime.send_signal(signal.SIGKILL)
        runtime.wait(timeout=30)
    pending.cancel()
    return session, client


@contextlib.asynccontextmanager
async def started_again_after_a_kill(
    env: dict[str, str], servers: Endpoints, prefix: str
) -> AsyncIterator[tuple[turnlog.ClientSession, turnlog.Client]]:
    """``kill_mid_turn``, then the slow app's runtime started again (JetStream redelivers
    the unacknowledged message to it); killed, and the client closed, at the end."""
    session, client = await kill_mid_turn(env, servers, prefix)
    runtime = spawn(env, "run", str(SLOW))
    try:
        yield session, client
    finally:
        runtime.kill()
        runtime.wait(timeout=30)
        await client.close()


async def test_a_turn_cut_off_by_a_kill_is_resumed_by_the_next_runtime_and_answered_once(
    cli_env: dict[str, str],
    prefix: str,
    servers: Endpoints,
    store: EventStore,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "runs.txt"
    marker.touch()
    env = env_for(cli_env, prefix, SLOW_MARKER=str(marker))
    async with started_again_after_a_kill(env, servers, prefix) as (session, client):
        live: list[bus.Live] = []

        async def seen(msg: Msg) -> None:
            live.append(msgspec.json.decode(msg.data, type=bus.Live))  # type: ignore[arg-type]

        await client.nc.subscribe(Subjects(prefix).live("slow", session.id), cb=seen)

        async def completed() -> bool:
            return (await types_of(store, session.id)).count("session.turn_completed") == 2

        await eventually(completed, timeout=60)
        assert (await session.send_message("after", timeout=60)).reply == "done after"

        assert ran(marker) == ["hello", "slow", "slow", "after"]  # the handler ran again, once
        types = await types_of(store, session.id)
        slow_turn = types[types.index("session.notified") :]
        assert slow_turn[:4] == [
            "session.notified",  # the first attempt's, not recorded again
            "session.turn_resumed",
            "session.reply_sent",
            "session.turn_completed",
        ]
        replies = [m.text for m in live if isinstance(m, bus.LiveReply)]
        assert replies.count("done slow") == 1 and "working" not in [
            m.text for m in live if isinstance(m, bus.LiveNotification)
        ]


async def test_without_resumption_a_turn_cut_off_by_a_kill_is_recorded_interrupted(
    cli_env: dict[str, str],
    prefix: str,
    servers: Endpoints,
    store: EventStore,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "runs.txt"
    marker.touch()
    env = env_for(cli_env, prefix, SLOW_MARKER=str(marker), SLOW_RESUME="0")
    async with started_again_after_a_kill(env, servers, prefix) as (session, _):

        async def interrupted() -> bool:
            return "session.turn_interrupted" in await types_of(store, session.id)

        await eventually(interrupted)
        assert (await session.send_message("after", timeout=60)).reply == "done after"

        assert ran(marker) == ["hello", "slow", "after"]
        types = await types_of(store, session.id)
        assert types.count("session.message_received") == 3
        slow_turn = types[types.index("session.notified") :]
        assert slow_turn[:2] == ["session.notified", "session.turn_interrupted"]


async def test_a_turn_that_kills_its_process_every_time_is_given_up_and_dead_lettered(
    cli_env: dict[str, str],
    prefix: str,
    servers: Endpoints,
    store: EventStore,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "runs.txt"
    marker.touch()
    env = env_for(cli_env, prefix, SLOW_MARKER=str(marker), TURNLOG_TURN_ATTEMPTS="2")
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    letters: list[bus.DeadLetter] = []

    async def lettered(msg: Msg) -> None:
        letters.append(msgspec.json.decode(msg.data, type=bus.DeadLetter))

    await client.nc.subscribe(Subjects(prefix).dlq("slow"), cb=lettered)
    runtime = spawn(env, "run", str(SLOW))
    try:
        session = client.session("slow")
        assert (await session.send_message("hello", timeout=60)).reply == "done hello"
        poison = asyncio.create_task(session.send_message("poison", timeout=120))
        deadline = time.monotonic() + 90
        while not letters:  # the app's runtime, started again each time it dies
            assert time.monotonic() < deadline, "the poison turn was never given up"
            if runtime.poll() is not None:
                runtime = spawn(env, "run", str(SLOW))
            await asyncio.sleep(0.2)
        (letter,) = letters
        assert (letter.reason, letter.session_id) == ("turn_given_up", session.id)
        original = msgspec.json.decode(letter.original, type=bus.InboundMessage)
        assert original.text == "poison"
        assert ran(marker) == ["hello", "poison", "poison"]  # two attempts, then given up
        types = await types_of(store, session.id)
        assert types[-1] == "session.turn_interrupted" and types.count("session.turn_resumed") == 1
        assert (await session.send_message("after", timeout=60)).reply == "done after"
        with pytest.raises(turnlog.ClientError, match="turn_given_up"):
            await poison  # the producer is told
    finally:
        runtime.kill()
        runtime.wait(timeout=30)
        await client.close()


def event(type_name: str, payload: dict[str, object]) -> NewEvent:
    """A test event of ``type_name`` holding ``payload``, recorded now."""
    return NewEvent(
        type=type_name,
        schema_version=1,
        recorded_at=datetime.now(UTC),
        payload=msgspec.json.encode(payload),
    )


async def test_relay_killed_under_load_publishes_every_position_exactly_once(
    cli_env: dict[str, str],
    prefix: str,
    servers: Endpoints,
    store: EventStore,
) -> None:
    streams = [f"load-{i}" for i in range(20)]
    for stream in streams:
        await store.append(stream, 0, [event("test.started", {"app": "load"})])
    writing = True

    async def write() -> None:
        versions = dict.fromkeys(streams, 1)
        n = 0
        while writing and n < 6000:
            stream = streams[n % len(streams)]
            await store.append(stream, versions[stream], [event("test.tick", {"n": n})] * 2)
            versions[stream] += 2
            n += 1

    env = env_for(cli_env, prefix)
    relay = spawn(env, "serve", "relay")
    writer = asyncio.create_task(write())
    try:
        await asyncio.sleep(2.0)
        relay.send_signal(signal.SIGKILL)
        relay.wait(timeout=30)
        await asyncio.sleep(0.5)
        relay = spawn(env, "serve", "relay")
        await asyncio.sleep(1.0)
        writing = False
        await writer
        last = await store.last_position()

        async def caught_up() -> bool:
            saved = await store.pool.fetchval(
                "SELECT position FROM turnlog_relay_positions WHERE name = 'relay'"
            )
            return saved == last

        await eventually(caught_up, timeout=60)
    finally:
        writing = False
        relay.send_signal(signal.SIGTERM)
        relay.wait(timeout=30)

    rows = await store.pool.fetch("SELECT position, stream_id FROM turnlog_events ORDER BY 1")
    expected = [r[0] for r in rows]
    nc = await nats.connect(servers.nats_url)
    try:
        js = nc.jetstream()
        subjects = Subjects(prefix)
        info = await js.stream_info(subjects.stream_events)
        sub = await js.pull_subscribe(
            subjects.events_all(),
            stream=subjects.stream_events,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        published: list[bus.EventEnvelope] = []
        while len(published) < info.state.messages:
            for msg in await sub.fetch(500, timeout=5):
                published.append(msgspec.json.decode(msg.data, type=bus.EventEnvelope))
                await msg.ack()
    finally:
        await nc.close()
    positions = [e.position for e in published]
    assert len(positions) == len(set(positions))  # JetStream dropped the republished ones
    assert sorted(positions) == expected  # and nothing is missing
    per_stream: dict[str, list[int]] = defaultdict(list)
    for e in published:
        per_stream[e.stream_id].append(e.position)
    assert all(p == sorted(p) for p in per_stream.values())  # in position order per stream
    assert len(expected) > 2000
    assert all(os.path.basename(e.stream_id).startswith("load-") for e in published)


async def test_relay_survives_a_nats_restart_without_gaps(
    store: EventStore, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from turnlog.services.adapters.embedded.nats import EmbeddedNats
    from turnlog.services.adapters.nats.relay import Relay
    from turnlog.services.adapters.nats.streams import ensure_streams
    from turnlog.services.bootstrap.serve import connect_nats

    def event(n: int) -> NewEvent:
        payload = {"app": "load"} if n == 0 else {"n": n}
        return NewEvent(
            type="test.tick",
            schema_version=1,
            recorded_at=datetime.now(UTC),
            payload=msgspec.json.encode(payload),
        )

    server = EmbeddedNats(tmp_path)
    status = server.start(None)
    subjects = Subjects("restart")
    nc = await connect_nats(status.url)
    relay_task = None
    try:
        js = nc.jetstream()
        await ensure_streams(js, subjects)
        relay = Relay(store, nc, subjects)
        relay_task = asyncio.create_task(relay.run())
        version = 0
        for n in range(200):
            await store.append("s", version, [event(n)])
            version += 1
        server.stop()  # NATS goes away while events keep coming
        for n in range(200, 400):
            await store.append("s", version, [event(n)])
            version += 1
        await asyncio.sleep(1.0)
        server.start(status.port)
        last = await store.last_position()

        async def caught_up() -> bool:
            return relay.reader is not None and await relay.saved_position() == last

        await eventually(caught_up, timeout=60)
        info = await js.stream_info(subjects.stream_events)
        sub = await js.pull_subscribe(
            subjects.events_all(),
            stream=subjects.stream_events,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        positions: list[int] = []
        while len(positions) < info.state.messages:
            for msg in await sub.fetch(500, timeout=5):
                positions.append(msgspec.json.decode(msg.data, type=bus.EventEnvelope).position)
        expected = [
            r[0]
            for r in await store.pool.fetch("SELECT position FROM turnlog_events ORDER BY position")
        ]
        assert positions == expected  # all 400, once each, in order
    finally:
        try:
            if relay_task is not None:
                relay_task.cancel()
                await asyncio.gather(relay_task, return_exceptions=True)
            with contextlib.suppress(Exception):
                await nc.close()
        finally:
            server.stop()
