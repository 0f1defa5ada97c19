"""What the JetStream streams keep: inbound messages until handled (waiting for an app
whose runtime is down, refusing producers when full), events and dead letters for a
configured time and size; an old inbound stream is moved, or kept with a warning."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import nats
import pytest
import structlog
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StreamConfig
from nats.js.errors import APIError

import turnlog
from tests.integration.conftest import Start
from turnlog.contracts import bus
from turnlog.contracts.events import UserRef
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.nats.streams import StreamSetupError, ensure_streams
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.settings import StreamLimits


def echo_app() -> turnlog.App:
    app = turnlog.App("echo")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        await session.reply(f"echo: {msg.text}")

    return app


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.fixture
async def js(servers: Endpoints) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(servers.nats_url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


async def stored(js: JetStreamContext, stream: str) -> int:
    return (await js.stream_info(stream)).state.messages


def message(text: str, session_id: str | None = None) -> bytes:
    inbound = bus.InboundMessage(
        message_id=f"m-{time.monotonic_ns()}", session_id=session_id, user=UserRef(id="u"),
        text=text,
    )  # fmt: skip
    return msgspec.json.encode(inbound)


async def test_each_stream_has_the_configured_retention(js: JetStreamContext, prefix: str) -> None:
    subjects = Subjects(prefix)
    limits = StreamLimits(
        in_max_bytes=1 << 20, events_max_age=60, events_max_bytes=2 << 20,
        dlq_max_age=3600, dlq_max_bytes=3 << 20,
    )  # fmt: skip
    await ensure_streams(js, subjects, limits)
    inbound = (await js.stream_info(subjects.stream_in)).config
    assert inbound.retention == RetentionPolicy.INTEREST and inbound.discard == DiscardPolicy.NEW
    assert inbound.max_bytes == 1 << 20 and not inbound.max_age
    events = (await js.stream_info(subjects.stream_events)).config
    assert events.retention == RetentionPolicy.LIMITS and events.discard == DiscardPolicy.OLD
    assert (events.max_age, events.max_bytes) == (60, 2 << 20)
    assert events.duplicate_window == 60  # never longer than the max age
    dlq = (await js.stream_info(subjects.stream_dlq)).config
    assert (dlq.max_age, dlq.max_bytes, dlq.discard) == (3600, 3 << 20, DiscardPolicy.OLD)

    with structlog.testing.capture_logs() as logs:
        await ensure_streams(js, subjects)  # the defaults, applied to the existing streams
    assert logs == []  # nothing to say: no retention changed
    events = (await js.stream_info(subjects.stream_events)).config
    assert (events.max_age, events.max_bytes) == (7 * 24 * 3600, 1 << 30)
    assert events.duplicate_window == 15 * 60
    # a producer creates what is missing and never overrides what turnlog configured
    await ensure_streams(js, subjects, StreamLimits(events_max_age=1), update=False)
    assert (await js.stream_info(subjects.stream_events)).config.max_age == 7 * 24 * 3600


async def test_inbound_messages_go_once_handled_and_wait_while_their_app_is_down(
    start_serving: Start, servers: Endpoints, prefix: str, js: JetStreamContext
) -> None:
    subjects = Subjects(prefix)
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        # sent before any runtime ever started: kept for one
        await client.js.publish(subjects.inbound("echo", None), message("early"))
        assert await stored(js, subjects.stream_in) == 1
        serving = await start_serving(echo_app())
        await until(lambda: _empty(js, subjects.stream_in))
        session = client.session("echo")
        assert (await session.send_message("hello")).reply == "echo: hello"
        assert await stored(js, subjects.stream_in) == 0
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        # the app's runtime is down: its message waits for it
        await client.js.publish(subjects.inbound("echo", session.id), message("later", session.id))
        await asyncio.sleep(0.5)
        assert await stored(js, subjects.stream_in) == 1
        await start_serving(echo_app())
        await until(lambda: _empty(js, subjects.stream_in))
    finally:
        await client.close()


async def test_a_full_inbound_stream_refuses_producers_instead_of_dropping_input(
    js: JetStreamContext, prefix: str
) -> None:
    subjects = Subjects(prefix)
    await ensure_streams(js, subjects, StreamLimits(in_max_bytes=4096))
    with pytest.raises(APIError, match="maximum bytes exceeded"):
        for i in range(100):  # nobody handles them: the router's consumer wants them
            await js.publish(subjects.inbound("echo", None), message(f"#{i}" + "x" * 200))
    assert 0 < await stored(js, subjects.stream_in) < 100


async def test_an_inbound_stream_with_limits_retention_is_moved_or_kept_with_a_warning(
    js: JetStreamContext, prefix: str, servers: Endpoints
) -> None:
    subjects = Subjects(prefix)
    await js.add_stream(StreamConfig(name=subjects.stream_in, subjects=[f"{prefix}.in.>"]))
    nc = await nats.connect(servers.nats_url)
    server = nc.connected_server_version
    await nc.close()
    with structlog.testing.capture_logs() as logs:
        await ensure_streams(js, subjects)  # never raises
    retention = (await js.stream_info(subjects.stream_in)).config.retention
    if (server.major, server.minor) >= (2, 10):
        assert retention == RetentionPolicy.INTEREST
        assert [e["event"] for e in logs] == [
            "inbound stream now has interest retention: handled messages were removed"
        ]
    else:  # NATS 2.9 cannot change a stream's retention
        assert retention == RetentionPolicy.LIMITS
        [warning] = [e for e in logs if e["log_level"] == "warning"]
        assert "cannot change its retention" in warning["event"]
        assert warning["stream"] == subjects.stream_in


async def test_limits_the_server_cannot_hold_are_a_clear_error(
    js: JetStreamContext, prefix: str
) -> None:
    with pytest.raises(StreamSetupError, match="TURNLOG_EVENTS_MAX_BYTES") as refused:
        await ensure_streams(js, Subjects(prefix), StreamLimits(events_max_bytes=1 << 50))
    assert "insufficient storage" in str(refused.value)


async def _empty(js: JetStreamContext, stream: str) -> bool:
    return await stored(js, stream) == 0
