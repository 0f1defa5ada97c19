"""Long-running turnlog processes: the runtime (ingress + handlers), the relay, the
projector and the query API, together (``turnlog run``) or apart (``turnlog serve ...``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription

from turnlog.contracts import query as q
from turnlog.projections.catalog import PROJECTIONS
from turnlog.services.adapters.nats import connection, files
from turnlog.services.adapters.nats.client import Client
from turnlog.services.adapters.nats.delivery import BusDelivery
from turnlog.services.adapters.nats.ingress import Ingress, ensure_runtime_consumer
from turnlog.services.adapters.nats.integrations import IntegrationResponder
from turnlog.services.adapters.nats.prompts import PromptListener
from turnlog.services.adapters.nats.relay import Relay
from turnlog.services.adapters.nats.router import Router, register
from turnlog.services.adapters.nats.streams import ensure_streams
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.adapters.nats.tasks import TaskQueue
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.projector.runner import Projector
from turnlog.services.adapters.postgres.projector.writes import ensure
from turnlog.services.app.integrations import Changed, Integrations, watch
from turnlog.services.app.log.errors import StoreError
from turnlog.services.app.schedules.scheduler import Scheduler
from turnlog.services.app.sessions.host import SessionHost
from turnlog.services.app.sessions.repository import SessionRepository
from turnlog.services.app.tasks.log import TaskLog
from turnlog.services.app.tasks.poster import SessionPoster
from turnlog.services.app.tasks.service import TaskService
from turnlog.services.app.tasks.worker import TaskWorker
from turnlog.services.bootstrap.health import Beacon, health
from turnlog.services.bootstrap.supervision import Supervisor
from turnlog.services.sdk.app import App
from turnlog.services.settings import NatsSecurity, Settings

log = structlog.get_logger("turnlog.serve")
Start = Callable[[], Awaitable[None]]


async def connect_nats(
    url: str, security: NatsSecurity | None = None, *, wait: bool = True
) -> NATS:
    """A connection of turnlog's own (runtime, relay, API, the CLI), with the
    configured credentials and TLS; ``wait`` False (a command) gives up on a server that
    cannot be reached at once instead of waiting for it."""
    try:
        return await connection.connect(url, security or NatsSecurity(), wait=wait)
    except Exception as e:
        raise StoreError(f"cannot connect to NATS at {connection.redact(url)}: {e}") from e


@dataclass(frozen=True)
class Parts:
    """What one process runs: the runtime for ``app``, the relay, the projector, the
    query API (HTTP and NATS request/reply)."""

    app: App | None = None
    relay: bool = False
    projector: bool = False
    api: bool = False


async def serve(
    settings: Settings,
    database_url: str,
    nats_url: str,
    parts: Parts,
    *,
    ready: asyncio.Event | None = None,
    handle_signals: bool = True,
) -> None:
    """Run ``parts`` until SIGINT/SIGTERM (or cancellation); stop cleanly, finishing
    turns in progress."""
    app = parts.app
    store = await EventStore.connect(database_url, min_size=2, max_size=20)
    projector_store: EventStore | None = None
    nc: NATS | None = None
    host: SessionHost | None = None
    prompts: PromptListener | None = None
    watching: Subscription | None = None
    scheduler: Scheduler | None = None
    integrations: Integrations | None = None
    responder: IntegrationResponder | None = None
    supervisor = Supervisor()
    jobs: dict[str, Start] = {"beacon": Beacon(store.pool, supervisor, _what(parts)).run}
    try:
        if app is not None or parts.relay or parts.api:
            nc = await connect_nats(nats_url, settings.nats_security)
        subjects = Subjects(settings.subject_prefix)
        if nc is not None and (app is not None or parts.api):
            integrations = Integrations(store, nc=nc, subjects=subjects)
            responder = IntegrationResponder(nc, integrations)
            await responder.start()
        if nc is not None and (app is not None or parts.relay):
            js = nc.jetstream()
            await ensure_streams(js, subjects, settings.streams)
        if app is not None and nc is not None:
            files.use(files.FileStore(js, subjects.bucket_files, settings.max_file_bytes))
            delivery = BusDelivery(nc, subjects, app.name)
            host = SessionHost(
                app,
                SessionRepository(store, snapshot_every=settings.snapshot_every),
                delivery,
                max_live=settings.max_live_sessions,
                idle_timeout=settings.session_idle_timeout or None,
                credentials=integrations.for_user if integrations is not None else None,
            )
            await host.start()
            prompts = PromptListener(nc, subjects, app.name, host.prompts)
            await prompts.start()
            watching = await watch(nc, subjects, _integration_changed(host))
            scheduler = Scheduler(app, store, integrations=integrations)
            await scheduler.start()
            jobs["ingress"] = Ingress(
                host,
                js,
                subjects,
                delivery,
                max_bytes=settings.max_inbound_bytes,
                ack_wait=settings.ack_wait,
            ).run
            await ensure_runtime_consumer(js, subjects, app.name, settings.ack_wait)
            await register(js, subjects, app.name)
            jobs["router"] = Router(js, subjects).run
            jobs |= _task_jobs(settings, store, nc, subjects, host)
        if parts.relay and nc is not None:
            jobs["relay"] = Relay(store, js, subjects).run
        if parts.projector:
            # its own pool: the follower holds a connection, and catch-up must not
            # starve the runtime's appends
            projector_store = await EventStore.connect(database_url, min_size=1, max_size=8)
            jobs["projector"] = Projector(projector_store, list(PROJECTIONS.values())).run
        if parts.api and nc is not None:
            assert integrations is not None  # made above for the API
            jobs |= await _api_jobs(settings, store, nc, integrations, supervisor, app)
        await _run_until_stopped(supervisor, jobs, ready, handle_signals, parts)
    finally:
        if responder is not None:
            await responder.stop()
        if prompts is not None:
            await prompts.stop()
        if watching is not None:
            with contextlib.suppress(Exception):
                await watching.unsubscribe()
        if scheduler is not None:
            await scheduler.stop()
        if host is not None:
            await host.stop()
            files.use(None)
            host.app.serve_tasks(None)
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.drain()
        if projector_store is not None:
            await projector_store.close()
        await store.close()
        log.info("stopped")


def _integration_changed(host: SessionHost) -> Changed:
    """What a runtime does when a user's integrations change: its live sessions of that
    user see them as they are now, and prompts waiting for that one to connect go on."""

    async def changed(user_id: str, type: str, connected: bool) -> None:
        if connected:  # first: a refresh that fails must not leave a prompt waiting
            host.prompts.integration_connected(user_id, type)
        await host.refresh_integrations(user_id)

    return changed


async def _api_jobs(
    settings: Settings,
    store: EventStore,
    nc: NATS,
    integrations: Integrations,
    supervisor: Supervisor,
    app: App | None = None,
) -> dict[str, Start]:
    """The query API over HTTP and NATS; over HTTP also the integrations routes and
    ``app``'s data and endpoint handlers, when this process runs the app."""
    from litestar.types import ControllerRouterHandler

    from turnlog.services.adapters.http.api import http_app, serve_http
    from turnlog.services.adapters.http.app_routes import app_routes
    from turnlog.services.adapters.http.integrations import integration_routes
    from turnlog.services.adapters.http.uploads import upload_routes
    from turnlog.services.adapters.nats.queries import QueryResponder
    from turnlog.services.adapters.postgres.queries import QueryService
    from turnlog.services.app.access import Keys, parse_keys

    await ensure(store.pool, PROJECTIONS.values())
    keys = Keys(parse_keys(settings.api_keys))
    if not settings.api_keys:
        log.warning("no API keys configured: the query API refuses every request")
    service = QueryService(store.pool)
    subjects = Subjects(settings.subject_prefix)
    producer = Client(nc, subjects, settings.max_file_bytes)
    routes: list[ControllerRouterHandler] = [
        integration_routes(integrations, keys),
        upload_routes(producer.files, producer, service, keys),
    ]
    if app is not None:
        routes += app_routes(app, keys, store.pool, integrations.for_caller)
    log.info("query API", url=f"http://{settings.http_host}:{settings.http_port}")

    async def healthz() -> q.Health:
        return await health(store.pool, supervisor)

    served = http_app(service, keys, routes, healthz)
    return {
        "http": lambda: serve_http(served, settings.http_host, settings.http_port),
        "queries": QueryResponder(nc, settings.subject_prefix, service, keys).run,
    }


def _task_jobs(
    settings: Settings, store: EventStore, nc: NATS, subjects: Subjects, host: SessionHost
) -> dict[str, Start]:
    """The app's tasks: submitted, read and cancelled through the log and the task
    queue; run here (on a worker of the queue's) when the app declares any."""
    app = host.app
    tasks, queue = TaskLog(store, host.repo.keyring), TaskQueue(nc, subjects)
    app.serve_tasks(TaskService(app.name, tasks, queue))
    if not app.tasks:
        return {}
    worker = TaskWorker(app, tasks, queue, SessionPoster(host), ack_wait=settings.ack_wait)
    return {"tasks": worker.run}


async def _run_until_stopped(
    supervisor: Supervisor,
    jobs: dict[str, Start],
    ready: asyncio.Event | None,
    handle_signals: bool,
    parts: Parts,
) -> None:
    """Run every part under ``supervisor`` until SIGINT/SIGTERM (or cancellation): a part
    that fails is started again, never the end of the process."""
    tasks = [supervisor.add(name, start) for name, start in jobs.items()]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if handle_signals else ()
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    log.info(
        "serving",
        app=parts.app.name if parts.app else None,
        relay=parts.relay,
        projector=parts.projector,
        api=parts.api,
    )
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def _what(parts: Parts) -> str:
    """What a process serves, as ``turnlog infra status`` shows it."""
    named = [f"runtime {parts.app.name}"] if parts.app else []
    named += [n for n, on in (("relay", parts.relay), ("projector", parts.projector)) if on]
    return ", ".join(named + (["api"] if parts.api else [])) or "nothing"
