"""The projection query API over HTTP: a Litestar app in front of the queries
(``ports.Queries``; ``QueryService`` on PostgreSQL), and serving it.

Every route but ``GET /healthz`` and the OpenAPI document (``GET /openapi.json``) needs
``Authorization: Bearer <key>``. Errors are always JSON ``{"code", "message"}``. The
routes are in ``query_routes``, the answers to errors in ``error_handlers``, the
document in ``openapi``, the health check in ``health``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator, Sequence
from typing import cast

import structlog
import uvicorn
from litestar import Litestar
from litestar.types import ControllerRouterHandler, Middleware

from turnlog.services.adapters.http.auth import SECURITY, bearer, caller
from turnlog.services.adapters.http.error_handlers import exception_handlers
from turnlog.services.adapters.http.health import HealthCheck, healthz_route
from turnlog.services.adapters.http.metrics import Render, metrics_route
from turnlog.services.adapters.http.openapi import openapi_config
from turnlog.services.adapters.http.query_routes import query_router
from turnlog.services.adapters.http.textpolicy import text_policy
from turnlog.services.app.access import Keys
from turnlog.services.app.ports import Queries

# SECURITY, bearer and caller are defined in auth, HealthCheck and healthz_route in
# health; importable from here too.
__all__ = [
    "MAX_BODY",
    "SECURITY",
    "HealthCheck",
    "bearer",
    "caller",
    "healthz_route",
    "http_app",
    "serve_http",
]

log = structlog.get_logger("turnlog.query.http")

MAX_BODY = 1 << 20


def http_app(
    service: Queries,
    keys: Keys,
    routes: Sequence[ControllerRouterHandler] = (),
    health: HealthCheck | None = None,
    metrics: Render | None = None,
) -> Litestar:
    """The query API for ``service``, with ``keys`` deciding who sees what; ``routes``
    (an app's data and endpoint handlers) are served beside it, outside its document;
    ``health`` answers ``/healthz``, ``metrics`` ``/metrics``."""
    handlers = [query_router(service, keys), healthz_route(health), *routes]
    if metrics is not None:
        handlers.append(metrics_route(metrics))
    return Litestar(
        route_handlers=handlers,
        exception_handlers=exception_handlers(service),
        openapi_config=openapi_config(),
        middleware=[cast(Middleware, text_policy)],
        request_max_body_size=MAX_BODY,
        logging_config=None,  # turnlog logs with structlog; Litestar's would reconfigure logging
        debug=False,
    )


# -- serving -----------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """uvicorn inside someone else's event loop: no signal handlers of its own, and
    ``ready`` set once it listens."""

    def __init__(self, config: uvicorn.Config, ready: asyncio.Event | None) -> None:
        super().__init__(config)
        self._ready = ready

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            bound = [s.getsockname()[:2] for server in self.servers for s in server.sockets]
            log.info("serving the query API over HTTP", listening=bound)
            if self._ready is not None:
                self._ready.set()


async def serve_http(
    app: Litestar,
    host: str,
    port: int,
    ready: asyncio.Event | None = None,
    *,
    grace: int = 5,
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled; ``ready`` is set once listening.

    On cancellation it stops accepting, gives requests in progress up to ``grace``
    seconds, then closes what is left, and re-raises. Failing to listen raises OSError.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=grace,
    )
    server = _Server(config, ready)

    async def run() -> None:
        try:
            await server.serve()
        except SystemExit:  # uvicorn's way of saying it could not start
            raise OSError(f"cannot serve HTTP on {host}:{port}") from None

    serving = asyncio.create_task(run())
    try:
        await asyncio.shield(serving)
    except asyncio.CancelledError:
        server.should_exit = True
        _, running = await asyncio.wait([serving], timeout=grace + 1.0)
        if running:
            server.force_exit = True
            serving.cancel()
            await asyncio.wait([serving], timeout=1.0)
        if serving.done() and not serving.cancelled() and serving.exception() is not None:
            log.warning("HTTP server stopped with an error", error=repr(serving.exception()))
        raise
