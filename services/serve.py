"""Long-running turnlog processes: the runtime (ingress + handlers) and the relay, together
(``turnlog run``) or apart (``turnlog serve runtime|relay``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from typing import Any

import nats
import structlog
from nats.aio.client import Client as NATS

from turnlog.services.bus.ingress import Ingress
from turnlog.services.bus.live import BusDelivery
from turnlog.services.bus.relay import Relay
from turnlog.services.bus.router import Router, register
from turnlog.services.bus.streams import ensure_streams
from turnlog.services.bus.subjects import Subjects
from turnlog.services.config import Settings
from turnlog.services.repository import SessionRepository
from turnlog.services.runtime.host import SessionHost
from turnlog.services.sdk.app import App
from turnlog.services.store.errors import StoreError
from turnlog.services.store.eventstore import EventStore

log = structlog.get_logger("turnlog.serve")


async def connect_nats(url: str) -> NATS:
    try:
        return await nats.connect(
            url, connect_timeout=5, max_reconnect_attempts=-1, reconnect_time_wait=0.5
        )
    except Exception as e:
        raise StoreError(f"cannot connect to NATS at {url}: {e}") from e


async def serve(
    settings: Settings,
    database_url: str,
    nats_url: str,
    *,
    app: App | None,
    relay: bool,
    ready: asyncio.Event | None = None,
    handle_signals: bool = True,
) -> None:
    """Run until SIGINT/SIGTERM (or cancellation): the runtime for ``app`` if given, the
    relay if asked; stop cleanly, finishing turns in progress."""
    store = await EventStore.connect(database_url, min_size=2, max_size=20)
    nc = await connect_nats(nats_url)
    subjects = Subjects(settings.subject_prefix)
    js = nc.jetstream()
    await ensure_streams(js, subjects)
    host: SessionHost | None = None
    jobs: list[Coroutine[Any, Any, None]] = []
    if app is not None:
        delivery = BusDelivery(nc, subjects, app.name)
        host = SessionHost(
            app,
            SessionRepository(store, snapshot_every=settings.snapshot_every),
            delivery,
            max_live=settings.max_live_sessions,
            idle_timeout=settings.session_idle_timeout or None,
        )
        await host.start()
        jobs.append(
            Ingress(
                host,
                js,
                subjects,
                delivery,
                max_bytes=settings.max_inbound_bytes,
                ack_wait=settings.ack_wait,
            ).run()
        )
        await register(js, subjects, app.name)
        jobs.append(Router(js, subjects).run())
    if relay:
        jobs.append(Relay(store, js, subjects).run())
    tasks = [asyncio.create_task(job) for job in jobs]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if handle_signals else ()
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    log.info("serving", app=app.name if app else None, relay=relay, nats=nats_url)
    if ready is not None:
        ready.set()
    try:
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([*tasks, stopped], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopped and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if host is not None:
            await host.stop()
        with contextlib.suppress(Exception):
            await nc.drain()
        await store.close()
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        log.info("stopped")
