"""The relay's pipelined publishes: nothing lands out of order, and a refusal is survived."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import msgspec
import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamConfig

from tests.integration.test_bus_crashes import event
from turnlog.contracts import bus
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.nats.pipeline import Pipeline, PublishRefused
from turnlog.services.adapters.nats.relay import Relay
from turnlog.services.adapters.nats.streams import ensure_streams
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.adapters.postgres.eventstore import EventStore


async def stored(js: nats.js.JetStreamContext, stream: str, subject: str) -> list[bytes]:
    """The messages on ``subject`` in ``stream``, in the stream's order."""
    sub = await js.pull_subscribe(
        subject, stream=stream, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    )
    out: list[bytes] = []
    while (await sub.consumer_info()).num_pending:
        out += [m.data for m in await sub.fetch(500, timeout=5)]
    return out


async def test_a_pipeline_stores_nothing_after_a_message_it_lost(
    servers: Endpoints, prefix: str
) -> None:
    nc = await nats.connect(servers.nats_url)
    pipeline = Pipeline(nc)
    try:
        js = nc.jetstream()
        stream = f"{prefix}-pipeline"
        await js.add_stream(StreamConfig(name=stream, subjects=[f"{prefix}.p.>"]))
        await pipeline.start()
        assert await (await pipeline.publish(f"{prefix}.p.a", b"1", "m1")) is True
        await js.publish(f"{prefix}.p.b", b"x")  # m1 is no longer the last one stored
        later = [await pipeline.publish(f"{prefix}.p.a", str(n).encode(), f"m{n}") for n in (2, 3)]
        for ack in later:
            with pytest.raises(PublishRefused):
                await ack
        pipeline.unchain()  # again from the first one refused
        again = [await pipeline.publish(f"{prefix}.p.a", str(n).encode(), f"m{n}") for n in (2, 3)]
        assert [await ack for ack in again] == [True, True]
        pipeline.unchain()  # and again from earlier: duplicates, then on from the last of them
        more = [
            await pipeline.publish(f"{prefix}.p.a", str(n).encode(), f"m{n}") for n in (2, 3, 4)
        ]
        assert [await ack for ack in more] == [False, False, True]
        assert await stored(js, stream, f"{prefix}.p.a") == [b"1", b"2", b"3", b"4"]
    finally:
        await pipeline.close()
        await nc.close()


async def test_the_relay_goes_on_in_order_after_jetstream_refuses_its_pipeline(
    store: EventStore, servers: Endpoints, prefix: str
) -> None:
    streams = [f"refused-{i}" for i in range(5)]
    for stream in streams:
        await store.append(stream, 0, [event("test.started", {"app": "load"})])
    subjects = Subjects(prefix)
    nc = await nats.connect(servers.nats_url)
    relay = Relay(store, nc, subjects, ack_timeout=2.0)
    running = asyncio.create_task(relay.run())
    try:
        js = nc.jetstream()
        await ensure_streams(js, subjects)
        versions = dict.fromkeys(streams, 1)
        for n in range(600):
            stream = streams[n % len(streams)]
            await store.append(stream, versions[stream], [event("test.tick", {"n": n})])
            versions[stream] += 1
            if n % 150 == 75:  # a message of someone else's: the relay's next one is refused
                await js.publish(subjects.events("other", "x"), b"{}")
        last = await store.last_position()
        rows = await store.pool.fetch("SELECT position FROM turnlog_events ORDER BY position")
        deadline = time.monotonic() + 60
        while relay.published < last:
            assert time.monotonic() < deadline, "the relay did not catch up"
            await asyncio.sleep(0.05)
        messages = await stored(js, subjects.stream_events, subjects.events_all("load"))
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await nc.close()
    published = [msgspec.json.decode(m, type=bus.EventEnvelope) for m in messages]
    positions = [e.position for e in published]
    assert positions == [r[0] for r in rows]  # each once, in the log's order
    per_stream: dict[str, list[int]] = defaultdict(list)
    for e in published:
        per_stream[e.stream_id].append(e.version)
    assert all(v == list(range(1, len(v) + 1)) for v in per_stream.values())
