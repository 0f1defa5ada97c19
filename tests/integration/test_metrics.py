"""``/metrics``: what a serving process counts and samples, scraped over HTTP (the API's
route and a port of its own) after real turns, failures and dead letters on the bus."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families

import turnlog
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.embedded.processes import free_port
from turnlog.services.bootstrap import metrics as sampling
from turnlog.services.bootstrap.serve import Parts, serve
from turnlog.services.settings import Settings

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def metered_app() -> turnlog.App:
    app = turnlog.App("metered")

    @app.message()
    async def on_message(session: turnlog.Session, msg: turnlog.Message) -> None:
        if msg.text == "fail":
            raise RuntimeError("as asked")
        await session.reply(f"echo {msg.text}")

    return app


@pytest.fixture
async def served(
    database_url: str,
    servers: Endpoints,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    monkeypatch.setattr(sampling, "SAMPLE_EVERY", 0.2)
    http_port, metrics_port = free_port(), free_port()
    settings = Settings(
        home=tmp_path, subject_prefix=prefix, http_port=http_port, metrics_port=metrics_port
    )
    ready = asyncio.Event()
    parts = Parts(app=metered_app(), relay=True, projector=True, api=True)
    task = asyncio.create_task(
        serve(settings, database_url, servers.nats_url, parts, ready=ready, handle_signals=False)
    )
    waiting = asyncio.create_task(ready.wait())
    await asyncio.wait([task, waiting], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if task.done():
        task.result()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as client:
            yield client, metrics_port
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(30):
                await task
    async with httpx.AsyncClient() as after:  # the metrics port closed with the process
        with pytest.raises(httpx.ConnectError):
            await after.get(f"http://127.0.0.1:{metrics_port}/metrics")


def samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scraped(api: httpx.AsyncClient, wanted: Samples) -> Samples:
    """The API's /metrics once it shows every ``wanted`` sample's value."""
    async with asyncio.timeout(20):
        while True:
            response = await api.get("/metrics")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
            found = samples(response.text)
            if all(found.get(k) == v for k, v in wanted.items()):
                return found
            await asyncio.sleep(0.1)


async def test_turns_dead_letters_and_lags_are_counted_and_sampled(
    served: tuple[httpx.AsyncClient, int], servers: Endpoints, prefix: str
) -> None:
    api, metrics_port = served
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        session = client.session("metered", user={"id": "u1"})
        for text in ("one", "two", "fail"):
            await session.send_message(text)
    finally:
        await client.close()
    nc = await nats.connect(servers.nats_url)
    try:
        js = nc.jetstream()
        await js.publish(f"{prefix}.in.metered.new", b"{not json")
        await js.publish(f"{prefix}.in.nosuchapp.new", b"{}")
    finally:
        await nc.close()

    app = (("app", "metered"),)
    found = await scraped(
        api,
        {
            ("turnlog_turns_total", (("app", "metered"), ("outcome", "ok"))): 2.0,
            ("turnlog_turns_total", (("app", "metered"), ("outcome", "failed"))): 1.0,
            ("turnlog_turn_seconds_count", app): 3.0,
            ("turnlog_dead_letters_total", (("app", "metered"), ("reason", "undecodable"))): 1.0,
            ("turnlog_dead_letters_total", (("app", "_unknown"), ("reason", "unknown_app"))): 1.0,
            ("turnlog_live_sessions", app): 1.0,
            ("turnlog_inbound_pending", app): 0.0,
            ("turnlog_relay_lag_events", ()): 0.0,
            ("turnlog_projection_lag_events", (("projection", "sessions"),)): 0.0,
            ("turnlog_projection_failed", (("projection", "sessions"),)): 0.0,
        },
    )
    assert found[("turnlog_turn_seconds_bucket", (*app, ("le", "+Inf")))] == 3.0
    assert 0 < found[("turnlog_turn_seconds_sum", app)] < 30
    assert ("turnlog_inbound_redelivered", app) in found
    # the port of its own serves the same registry
    async with httpx.AsyncClient() as other:
        own = samples((await other.get(f"http://127.0.0.1:{metrics_port}/metrics")).text)
    assert own[("turnlog_turns_total", (("app", "metered"), ("outcome", "ok")))] == 2.0
