"""Long-running turnlog processes: the runtime (ingress + handlers), the relay, the
projector and the query API, together (``turnlog run``) or apart (``turnlog serve ...``)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription

from turnlog.contracts import query as q
from turnlog.projections.catalog import PROJECTIONS
from turnlog.services.adapters.nats import connection
from turnlog.services.adapters.nats.client import Client
from turnlog.services.adapters.nats.consumers import (
    ensure_every_app,
    ensure_runtime_consumer,
)
from turnlog.services.adapters.nats.consumers import partitioned as stream_partitioned
from turnlog.services.adapters.nats.delivery import BusDelivery
from turnlog.services.adapters.nats.files import FileStore
from turnlog.services.adapters.nats.ingress import Ingress
from turnlog.services.adapters.nats.integrations import (
    IntegrationResponder,
    NatsNotices,
    watch,
)
from turnlog.services.adapters.nats.partitioning import explain_unpartitioned, transforms
from turnlog.services.adapters.nats.prompts import PromptListener
from turnlog.services.adapters.nats.relay import Relay
from turnlog.services.adapters.nats.router import Router, register
from turnlog.services.adapters.nats.streams import ensure_streams
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.adapters.nats.task_worker import TaskWorker
from turnlog.services.adapters.nats.tasks import TaskQueue
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.projector.runner import Projector
from turnlog.services.adapters.postgres.projector.writes import ensure
from turnlog.services.adapters.prometheus.metrics import PrometheusMetrics
from turnlog.services.app.cancelling import checkpoint
from turnlog.services.app.log.errors import Unavailable
from turnlog.services.app.sessions.host import SessionHost
from turnlog.services.app.tasks.poster import SessionPoster
from turnlog.services.bootstrap.health import Beacon, health
from turnlog.services.bootstrap.metrics import Sampler
from turnlog.services.bootstrap.supervision import Supervisor
from turnlog.services.bootstrap.wiring import Wiring
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
        raise Unavailable(f"cannot connect to NATS at {connection.redact(url)}: {e}") from e


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
    turns in progress. Everything started is stopped in the reverse order."""
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(log.info, "stopped")
        store = await EventStore.connect(database_url, min_size=2, max_size=20)
        stack.push_async_callback(store.close)
        supervisor = Supervisor()
        runtimes: list[Callable[[], q.RuntimeHealth]] = []  # this process's app runtimes
        beacon = Beacon(store.pool, supervisor, _what(parts), lambda: [r() for r in runtimes])
        jobs: dict[str, Start] = {"beacon": beacon.run}
        metrics = PrometheusMetrics()
        if settings.metrics_port:
            metrics.serve(settings.http_host, settings.metrics_port)
            stack.callback(metrics.close)
        if parts.app is None:  # a runtime samples its app's gauges as well
            jobs["metrics"] = Sampler(metrics, store).run
        nc: NATS | None = None
        if parts.app is not None or parts.relay or parts.api:
            nc = await connect_nats(nats_url, settings.nats_security)
            stack.push_async_callback(_drained, nc)
        subjects = Subjects(settings.subject_prefix)
        wiring = _wiring(settings, store, nc, subjects, metrics)
        if nc is not None:
            jobs |= await _bus_jobs(stack, wiring, store, nc, subjects, parts, runtimes)
        if parts.projector:
            # its own pool: the follower holds a connection, and catch-up must not
            # starve the runtime's appends
            projector_store = await EventStore.connect(database_url, min_size=1, max_size=8)
            stack.push_async_callback(projector_store.close)
            jobs["projector"] = Projector(projector_store, list(PROJECTIONS.values())).run
        if parts.api and nc is not None:
            jobs |= await _api_jobs(wiring, store, nc, supervisor, parts.app, metrics.render)
        await _run_until_stopped(supervisor, jobs, ready, handle_signals, parts)


def _wiring(
    settings: Settings,
    store: EventStore,
    nc: NATS | None,
    subjects: Subjects,
    metrics: PrometheusMetrics,
) -> Wiring:
    """The process's ports: PostgreSQL for the log, documents and claims; with a NATS
    connection, its object store for files, its task queue and its integration notices."""
    if nc is None:
        return Wiring.postgres(store, settings=settings, metrics=metrics)
    return Wiring.postgres(
        store,
        settings=settings,
        metrics=metrics,
        files=FileStore(nc.jetstream(), subjects.bucket_files, settings.max_file_bytes),
        queue=TaskQueue(nc, subjects),
        notices=NatsNotices(nc, subjects),
    )


async def _drained(nc: NATS) -> None:
    with contextlib.suppress(Exception):
        await nc.drain()


async def _bus_jobs(
    stack: contextlib.AsyncExitStack,
    wiring: Wiring,
    store: EventStore,
    nc: NATS,
    subjects: Subjects,
    parts: Parts,
    runtimes: list[Callable[[], q.RuntimeHealth]],
) -> dict[str, Start]:
    """What runs on the bus: the integration commands' responder (for a runtime or the
    API), the streams, the runtime of ``parts.app`` and the relay."""
    jobs: dict[str, Start] = {}
    if parts.app is not None or parts.api:
        responder = IntegrationResponder(nc, wiring.integrations, subjects)
        await responder.start()
        stack.push_async_callback(responder.stop)
    if parts.app is None and not parts.relay:
        return jobs
    js, settings = nc.jetstream(), wiring.settings
    before = None  # a runtime gives the inbound stream its partitions, the relay does not
    if parts.app is not None:
        before = functools.partial(ensure_every_app, js, subjects, settings.ack_wait)
    await ensure_streams(
        js, subjects, settings.streams, partitioned=transforms(nc), before_partitioning=before
    )
    if parts.app is not None:
        jobs |= await _runtime_jobs(stack, wiring, nc, subjects, parts.app, runtimes)
    if parts.relay:
        jobs["relay"] = Relay(store, nc, subjects).run
    return jobs


async def _runtime_jobs(
    stack: contextlib.AsyncExitStack,
    wiring: Wiring,
    nc: NATS,
    subjects: Subjects,
    app: App,
    runtimes: list[Callable[[], q.RuntimeHealth]],
) -> dict[str, Start]:
    """The runtime of ``app``: its sessions fed by the ingress (while this process holds
    the app's claim), its prompts, schedules and tasks, and its outbound router."""
    settings = wiring.settings
    delivery = BusDelivery(nc, subjects, app.name)
    host = wiring.host(
        app,
        delivery,
        max_live=settings.max_live_sessions,
        idle_timeout=settings.session_idle_timeout or None,
    )
    await host.start()
    stack.push_async_callback(host.stop)
    scheduler = wiring.scheduler(app)
    await scheduler.start()
    stack.push_async_callback(scheduler.stop)
    watching = await watch(nc, subjects, host.integration_changed)
    stack.push_async_callback(_unsubscribed, watching)
    prompts = PromptListener(nc, subjects, app.name, host.prompts)
    await prompts.start()
    stack.push_async_callback(prompts.stop)
    jobs = await _inbound_jobs(wiring, host, delivery, subjects, runtimes)
    queue = wiring.queue  # the bus's task queue, made by _wiring
    if app.tasks and isinstance(queue, TaskQueue):
        worker = TaskWorker(
            app,
            wiring.tasks,
            queue,
            SessionPoster(host),
            runtime=wiring.runtime(app),
            ack_wait=settings.ack_wait,
        )
        jobs["tasks"] = worker.run
    return jobs


async def _inbound_jobs(
    wiring: Wiring,
    host: SessionHost,
    delivery: BusDelivery,
    subjects: Subjects,
    runtimes: list[Callable[[], q.RuntimeHealth]],
) -> dict[str, Start]:
    """The app's inbound side: its ingress (with the consumers it reads: one per
    partition, and the legacy lane's), the router that dead-letters messages no runtime
    takes, and the sampler of its gauges."""
    settings, app, js = wiring.settings, host.app, delivery.nc.jetstream()
    partitioned = await stream_partitioned(js, subjects)
    if not partitioned:
        explain_unpartitioned(delivery.nc, app.name)
    ingress = Ingress(
        host,
        js,
        subjects,
        delivery,
        wiring.claims,
        max_bytes=settings.max_inbound_bytes,
        ack_wait=settings.ack_wait,
        metrics=wiring.metrics,
        partitioned=partitioned,
    )
    runtimes.append(ingress.health)
    await ensure_runtime_consumer(js, subjects, app.name, settings.ack_wait, partitions=partitioned)
    await register(js, subjects, app.name)
    jobs: dict[str, Start] = {
        "ingress": ingress.run,
        "router": Router(js, subjects, wiring.metrics, partitioned=partitioned).run,
    }
    if isinstance(wiring.metrics, PrometheusMetrics) and isinstance(wiring.log, EventStore):
        jobs["metrics"] = Sampler(wiring.metrics, wiring.log, host, js, subjects).run
    return jobs


async def _unsubscribed(subscription: Subscription) -> None:
    with contextlib.suppress(Exception):
        await subscription.unsubscribe()


async def _api_jobs(
    wiring: Wiring,
    store: EventStore,
    nc: NATS,
    supervisor: Supervisor,
    app: App | None = None,
    metrics: Callable[[], bytes] | None = None,
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

    settings, pool = wiring.settings, store.pool
    await ensure(pool, PROJECTIONS.values())
    keys = Keys(parse_keys(settings.api_keys))
    if not settings.api_keys:
        log.warning("no API keys configured: the query API refuses every request")
    service = QueryService(pool, store.keyring)
    producer = Client(nc, Subjects(settings.subject_prefix), settings.max_file_bytes)
    integrations = wiring.integrations
    routes: list[ControllerRouterHandler] = [
        integration_routes(integrations, keys),
        upload_routes(producer.files, producer, service, keys),
    ]
    if app is not None:
        runtime = wiring.runtime(app)
        routes += app_routes(app, keys, pool, integrations.for_caller, runtime=runtime)
    log.info("query API", url=f"http://{settings.http_host}:{settings.http_port}")

    async def healthz() -> q.Health:
        return await health(pool, supervisor)

    served = http_app(service, keys, routes, healthz, metrics)
    return {
        "http": lambda: serve_http(served, settings.http_host, settings.http_port),
        "queries": QueryResponder(nc, settings.subject_prefix, service, keys).run,
    }


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
        checkpoint()  # cancelled while it started, and the cancellation lost (cancelling.py)
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
