"""An app's ``@app.data`` and ``@app.endpoint`` handlers, served over HTTP next to the
query API: the caller named by the API key, the handler called with its parameters, its
result (or its failure) answered as JSON.

Callers are app users. A ``read:user=<id>`` key is user ``<id>``; an admin key acts for
the user named in ``X-Turnlog-User`` (a trusted backend signing its users in itself).
No key: nobody (``ctx.authenticated`` False). Any other key is refused (403), an unknown
one 401. The caller's email and org are those of their latest session in the app, so
owner-scoped collections resolve to the same org as in chat.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg
import msgspec
import structlog
from litestar import HttpMethod, MediaType, Request, Response, get, route
from litestar.handlers import HTTPRouteHandler

from turnlog.contracts import query as q
from turnlog.domain import values
from turnlog.domain.errors import DomainError, InvalidText, TooDeep
from turnlog.services.adapters.http.auth import bearer
from turnlog.services.adapters.http.errors import http_status
from turnlog.services.app import context
from turnlog.services.app.access import Keys, QueryFailure, forbidden, invalid, unauthorized
from turnlog.services.app.context import Runtime
from turnlog.services.sdk.app import App
from turnlog.services.sdk.request import NO_INTEGRATIONS, AuthenticationRequired, RequestContext
from turnlog.services.sdk.routes import NO_BODY, ParameterError, Route
from turnlog.services.sdk.types import UserInfo

log = structlog.get_logger("turnlog.app_routes")

ACT_AS = "X-Turnlog-User"
REQUEST_ID = "X-Request-Id"
WITH_BODY = ("POST", "PUT", "PATCH")
Integrations = Callable[[UserInfo | None], Awaitable[Mapping[str, Any]]]
_decode = msgspec.json.Decoder()
_encode = msgspec.json.Encoder()


async def no_integrations(user: UserInfo | None) -> Mapping[str, Any]:
    """Every caller has none: the lookup when ``app_routes`` is given no other
    (``turnlog run`` gives ``Integrations.for_caller``)."""
    return NO_INTEGRATIONS


def app_routes(
    app: App,
    keys: Keys,
    pool: asyncpg.Pool,
    integrations: Integrations = no_integrations,
    runtime: Runtime | None = None,
) -> list[HTTPRouteHandler]:
    """Route handlers for ``app``'s data handlers (``GET /data/{name}``) and endpoints
    (each at its path), to mount on the query API's Litestar app; ``runtime``: what the
    handlers reach through turnlog (collections, tasks, files)."""
    served = _Served(
        app, _Callers(keys, pool, app.name), integrations, runtime or Runtime(app.name)
    )
    handlers = [served.data_handler()] if app.routes.data else []
    by_path: dict[str, list[Route]] = {}
    for r in app.routes.endpoints.values():
        by_path.setdefault(r.path, []).append(r)
    handlers += [served.endpoint_handler(path, routes) for path, routes in by_path.items()]
    return handlers


class _Callers:
    def __init__(self, keys: Keys, pool: asyncpg.Pool, app_name: str) -> None:
        self._keys, self._pool, self._app = keys, pool, app_name

    async def identify(self, request: Request[Any, Any, Any]) -> UserInfo | None:
        """The app user calling, None when nobody is; raises 401/403 QueryFailures."""
        key = bearer(request)
        acting_for = request.headers.get(ACT_AS, "").strip()
        if key is None:
            if acting_for:
                raise unauthorized(f"{ACT_AS} needs an admin key")
            return None
        principal = self._keys.authenticate(key)
        if principal.scope == "user" and principal.user_id:
            if acting_for not in ("", principal.user_id):
                raise forbidden(f"a user's key acts for its own user only, not {acting_for!r}")
            return await self._user(principal.user_id)
        if principal.scope == "admin" and acting_for:
            try:
                values.user_id(acting_for, ACT_AS)
            except DomainError as e:
                code = e.code if e.code in values.POLICY_CODES else ""
                raise invalid(f"{code}: {e}") from None
            return await self._user(acting_for)
        raise forbidden(
            f"app routes take a user's key (read:user=<id>) or an admin key with {ACT_AS}"
        )

    async def _user(self, user_id: str) -> UserInfo:
        row = await self._pool.fetchrow(
            "SELECT user_email, org_id FROM turnlog_sessions WHERE user_id = $1 AND app = $2"
            " ORDER BY started_at DESC LIMIT 1",
            user_id,
            self._app,
        )
        if row is None:
            return UserInfo(id=user_id)
        return UserInfo(id=user_id, email=row["user_email"], org_id=row["org_id"])


class _Served:
    def __init__(
        self, app: App, callers: _Callers, integrations: Integrations, runtime: Runtime
    ) -> None:
        self.app, self.callers, self.integrations = app, callers, integrations
        self.runtime = runtime

    def data_handler(self) -> HTTPRouteHandler:
        async def data(request: Request[Any, Any, Any]) -> Response[Any]:
            name = request.path_params["name"]
            found = self.app.routes.data.get(name)
            if found is None:
                return _error(404, "not_found", f"no data handler {name[:100]!r}")
            return await self.answer(found, request)

        return get("/data/{name:str}", include_in_schema=False, name="app-data")(data)

    def endpoint_handler(self, path: str, routes: list[Route]) -> HTTPRouteHandler:
        by_method = {r.method: r for r in routes}
        template = path
        for name in routes[0].path_params:
            template = template.replace(f"{{{name}}}", f"{{{name}:str}}")

        async def endpoint(request: Request[Any, Any, Any]) -> Response[Any]:
            return await self.answer(by_method[request.method], request)

        methods = [HttpMethod(m) for m in by_method]
        # the status is the answer's own; 200 only keeps Litestar's DELETE default (204)
        # from refusing handlers that return a body
        return route(template, http_method=methods, status_code=200, include_in_schema=False)(
            endpoint
        )

    async def answer(self, r: Route, request: Request[Any, Any, Any]) -> Response[Any]:
        request_id = uuid.uuid4().hex
        started = time.perf_counter()
        response = await self._answer(r, request, request_id)
        response.headers[REQUEST_ID] = request_id
        log.debug(
            "app route answered",
            app=self.app.name,
            method=request.method,
            path=request.url.path,
            status=response.status_code,
            request_id=request_id,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return response

    async def _answer(
        self, r: Route, request: Request[Any, Any, Any], request_id: str
    ) -> Response[Any]:
        try:
            user = await self.callers.identify(request)
            if r.protected and user is None:
                raise unauthorized()
            ctx = RequestContext(
                self.app.name,
                user,
                request_id=request_id,
                request=request,
                integrations=await self.integrations(user),
                collections=self.app.collections,
                runtime=self.runtime,
            )
            path = {n: str(request.path_params[n]) for n in r.path_params}
            kwargs = r.bind(ctx, path, request.query_params.dict(), await _body(request))
        except QueryFailure as e:
            status = http_status(e.code)
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return _error(status, e.code, e.message, headers)
        except ParameterError as e:
            return _error(http_status(e.code), e.code, str(e))
        return await self._call(r, kwargs, ctx)

    async def _call(self, r: Route, kwargs: dict[str, Any], ctx: RequestContext) -> Response[Any]:
        token = context.request.set(ctx)
        served = context.runtime.set(self.runtime)
        try:
            result = await r.call(kwargs)
            if result is None:
                return Response(b"", status_code=204)
            return Response(_encode.encode(result), status_code=200, media_type=MediaType.JSON)
        except AuthenticationRequired as e:
            return _error(http_status(e.code), e.code, str(e), {"WWW-Authenticate": "Bearer"})
        except (InvalidText, TooDeep) as e:  # the caller's input, refused by the policy
            return _error(http_status(e.code), "invalid_request", f"{e.code}: {e}")
        except Exception as e:
            log.error(
                "app handler failed",
                app=self.app.name,
                handler=getattr(r.fn, "__qualname__", repr(r.fn)),
                method=r.method,
                path=r.path,
                request_id=ctx.request_id,
                exc_info=e,
            )
            return _error(500, "internal", "internal error")
        finally:
            context.runtime.reset(served)
            context.request.reset(token)


async def _body(request: Request[Any, Any, Any]) -> Any:
    """The request's JSON body, NO_BODY when it has none (or another media type: the
    handler reads ``ctx.request`` for those)."""
    if request.method not in WITH_BODY:
        return NO_BODY
    raw = await request.body()
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if not raw or (media and media != "application/json" and not media.endswith("+json")):
        return NO_BODY
    try:
        return _decode.decode(raw)
    except msgspec.DecodeError as e:
        raise ParameterError("body", f"not valid JSON ({e})") from None


def _error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response[Any]:
    return Response(
        q.ErrorBody(code=code, message=message),
        status_code=status,
        media_type=MediaType.JSON,
        headers=dict(headers or {}),
    )
