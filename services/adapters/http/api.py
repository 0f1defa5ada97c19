"""The projection query API over HTTP: a Litestar app in front of the queries
(``ports.Queries``; ``QueryService`` on PostgreSQL).

Every route but ``GET /healthz`` and the OpenAPI document (``GET /openapi.json``) needs
``Authorization: Bearer <key>``. Errors are always JSON ``{"code", "message"}``.

Litestar resolves handler annotations at runtime from this module's globals, which works
with ``from __future__ import annotations`` as long as every name used in a handler or
dependency signature is imported at module level (not under ``TYPE_CHECKING``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from typing import Annotated, Any, cast

import structlog
import uvicorn
from litestar import Litestar, MediaType, Request, Response, Router, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.params import JSONBody, PathParameter, QueryParameter
from litestar.types import ControllerRouterHandler, ExceptionHandlersMap, Middleware

from turnlog.contracts import query as q
from turnlog.services.adapters.http.errors import http_status
from turnlog.services.adapters.http.textpolicy import text_policy
from turnlog.services.app.access import MAX_LIMIT, Keys, Principal, QueryFailure, input_failure
from turnlog.services.app.ports import Queries

log = structlog.get_logger("turnlog.query.http")

TITLE = "turnlog query API"
API_VERSION = "1"
SECURITY = "bearer"
MAX_BODY = 1 << 20
_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "too_large",
    415: "unsupported_media_type",
}
_ERRORS: dict[int, ResponseSpec] = {
    status: ResponseSpec(data_container=q.ErrorBody, generate_examples=False, description=text)
    for status, text in (
        (400, "Invalid request: a parameter, cursor or body that cannot be used"),
        (401, "Missing or unknown API key"),
        (403, "The key may not see this"),
        (404, "No such session (or not one this key may see)"),
        (500, "Internal error"),
    )
}

Limit = Annotated[
    int, QueryParameter(ge=1, le=MAX_LIMIT, description=f"Page size, 1 to {MAX_LIMIT}")
]
Cursor = Annotated[str | None, QueryParameter(description="next_cursor of the previous page")]
SessionId = Annotated[str, PathParameter(description="The session's id")]
Service = NamedDependency[Queries]
Who = NamedDependency[Principal]


# -- routes ------------------------------------------------------------------------------


@get(
    "/v1/sessions",
    responses=_ERRORS,
    summary="List sessions",
    description="Sessions, newest first. since/until (ISO 8601) bound their start time.",
)
async def list_sessions(
    service: Service,
    who: Who,
    app: Annotated[str | None, QueryParameter(description="Only this app's")] = None,
    user: Annotated[str | None, QueryParameter(description="Only this user's")] = None,
    channel: Annotated[str | None, QueryParameter(description="Only this channel type")] = None,
    since: Annotated[str | None, QueryParameter(description="ISO 8601 time, inclusive")] = None,
    until: Annotated[str | None, QueryParameter(description="ISO 8601 time, exclusive")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> q.SessionPage:
    return await service.list_sessions(
        who,
        app=app,
        user=user,
        channel=channel,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )


@get("/v1/sessions/{session_id:str}", summary="Get one session", responses=_ERRORS)
async def get_session(service: Service, who: Who, session_id: SessionId) -> q.SessionSummary:
    return await service.get_session(who, session_id)


@get(
    "/v1/sessions/{session_id:str}/history",
    responses=_ERRORS,
    summary="A session's history",
    description="Messages in and out, oldest first.",
)
async def history(
    service: Service,
    who: Who,
    session_id: SessionId,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> q.HistoryPage:
    return await service.history(who, session_id, limit=limit, cursor=cursor)


@get("/v1/sessions/{session_id:str}/data", summary="A session's data", responses=_ERRORS)
async def data(service: Service, who: Who, session_id: SessionId) -> q.SessionData:
    return await service.data(who, session_id)


@get("/v1/sessions/{session_id:str}/blocks", summary="A session's blocks", responses=_ERRORS)
async def blocks(service: Service, who: Who, session_id: SessionId) -> q.BlockList:
    return await service.blocks(who, session_id)


@get(
    "/v1/sessions/{session_id:str}/events",
    responses=_ERRORS,
    summary="A session's events",
    description="The session's own events from from_version, straight from the log.",
)
async def events(
    service: Service,
    who: Who,
    session_id: SessionId,
    from_version: Annotated[
        int, QueryParameter(ge=1, le=2**63 - 1, description="First version to return")
    ] = 1,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> q.EventPage:
    return await service.events(
        who, session_id, from_version=from_version, limit=limit, cursor=cursor
    )


@get(
    "/v1/sessions/{session_id:str}/state",
    responses=_ERRORS,
    summary="A session as of a point",
    description="History, data and blocks as of a version or a time, from events alone.",
)
async def state(
    service: Service,
    who: Who,
    session_id: SessionId,
    as_of_version: Annotated[
        int | None, QueryParameter(ge=1, le=2**31 - 1, description="As of this version")
    ] = None,
    at: Annotated[str | None, QueryParameter(description="As of this ISO 8601 time")] = None,
) -> q.SessionState:
    return await service.state(who, session_id, as_of_version=as_of_version, at=at)


@post(
    "/v1/collections/find",
    responses=_ERRORS,
    status_code=200,
    summary="Find documents",
    description="Documents of one collection in _id order; a user key sees its user's only.",
)
async def find(service: Service, who: Who, data: JSONBody[q.FindRequest]) -> q.DocumentPage:
    return await service.find(who, data)


@get("/v1/projections", summary="Projection positions and lag", responses=_ERRORS)
async def projections(service: Service, who: Who) -> q.ProjectionStatusList:
    return await service.projection_status(who)


HealthCheck = Callable[[], Awaitable[q.Health]]


def healthz_route(check: HealthCheck | None) -> HTTPRouteHandler:
    """``GET /healthz``: 200 while this process is healthy, 503 with what is not."""

    @get(
        "/healthz",
        summary="Health",
        description="200 while every part of this process runs, the database answers and"
        " no projection has failed; 503 (status degraded) with what is not.",
        responses={503: ResponseSpec(data_container=q.Health, description="Degraded")},
    )
    async def healthz() -> Response[q.Health]:
        body = q.Health(ok=True) if check is None else await check()
        return Response(body, status_code=200 if body.ok else 503, media_type=MediaType.JSON)

    return healthz


# -- errors ------------------------------------------------------------------------------


def _error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response[q.ErrorBody]:
    return Response(
        q.ErrorBody(code=code, message=message),
        status_code=status,
        media_type=MediaType.JSON,
        headers=dict(headers or {}),
    )


def _on_failure(request: Request[Any, Any, Any], exc: QueryFailure) -> Response[q.ErrorBody]:
    status = http_status(exc.code)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return _error(status, exc.code, exc.message, headers)


def _validation_message(exc: ValidationException) -> str:
    problems = []
    extra = exc.extra if isinstance(exc.extra, list) else [exc.extra] if exc.extra else []
    for item in extra:
        if not isinstance(item, dict):
            problems.append(str(item))
            continue
        key, source = item.get("key"), item.get("source")
        source = getattr(source, "value", source)
        if source == "body":
            where = "body" if key in (None, "data") else f"body field {key}"
        elif key:
            where = f"{source} parameter {key}" if source else str(key)
        else:
            where = ""
        problems.append(f"{where}: {item.get('message')}" if where else str(item.get("message")))
    return "; ".join(problems) or exc.detail or "the request is not valid"


def _on_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[q.ErrorBody]:
    status = exc.status_code
    if status >= 500:
        log.error("query API error", method=request.method, path=request.url.path, exc_info=exc)
        return _error(500, "internal", "internal error")
    if isinstance(exc, ValidationException):
        message = _validation_message(exc)
    elif status == 404:
        message = f"no route {request.method} {request.url.path[:200]}"
    elif status == 405:
        message = f"{request.method} is not allowed on {request.url.path[:200]}"
    else:
        message = exc.detail or "the request cannot be answered"
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() in ("allow",)}
    return _error(status, _CODES.get(status, "invalid_request"), message, headers)


def _schema_not_found(response: Response[Any]) -> Response[Any]:
    """Litestar's OpenAPI router answers unknown paths under it with an HTML page."""
    if response.status_code == 404:
        return _error(404, "not_found", "no such route")
    return response


def _on_exception(
    service: Queries,
) -> Callable[[Request[Any, Any, Any], Exception], Response[q.ErrorBody]]:
    def on_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[q.ErrorBody]:
        failure = input_failure(exc, service.refuses)
        if failure is not None:
            return _on_failure(request, failure)
        log.error(
            "query API request failed", method=request.method, path=request.url.path, exc_info=exc
        )
        return _error(500, "internal", "internal error")

    return on_exception


# -- the app -----------------------------------------------------------------------------


def bearer(request: Request[Any, Any, Any]) -> str | None:
    """The key a request presents (``Authorization: Bearer <key>``), if any."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def caller(keys: Keys) -> Provide:
    """The ``who`` dependency of a router: the principal of the request's key, or 401."""

    def authenticate(request: Request[Any, Any, Any]) -> Principal:
        return keys.authenticate(bearer(request))

    return Provide(authenticate, sync_to_thread=False)


def http_app(
    service: Queries,
    keys: Keys,
    routes: Sequence[ControllerRouterHandler] = (),
    health: HealthCheck | None = None,
) -> Litestar:
    """The query API for ``service``, with ``keys`` deciding who sees what; ``routes``
    (an app's data and endpoint handlers) are served beside it, outside its document;
    ``health`` answers ``/healthz``."""

    def provide_service() -> Queries:
        return service

    api = Router(
        "/",
        route_handlers=[
            list_sessions,
            get_session,
            history,
            state,
            data,
            blocks,
            events,
            find,
            projections,
        ],
        dependencies={
            "service": Provide(provide_service, sync_to_thread=False),
            "who": caller(keys),
        },
        security=[{SECURITY: []}],
        tags=["query"],
    )
    handlers: ExceptionHandlersMap = {
        QueryFailure: _on_failure,
        HTTPException: _on_http,
        Exception: _on_exception(service),
    }
    return Litestar(
        route_handlers=[api, healthz_route(health), *routes],
        exception_handlers=handlers,
        openapi_config=OpenAPIConfig(
            title=TITLE,
            version=API_VERSION,
            description="Read-only queries over turnlog's projections.",
            # The document is the one route of this router: GET /openapi.json.
            openapi_router=Router(
                "/openapi.json",
                route_handlers=[],
                include_in_schema=False,
                after_request=_schema_not_found,
            ),
            render_plugins=[JsonRenderPlugin(path="/", media_type=MediaType.JSON)],
            components=Components(
                security_schemes={
                    SECURITY: SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="An API key from TURNLOG_API_KEYS",
                    )
                }
            ),
            create_examples=False,
            use_handler_docstrings=False,
        ),
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
