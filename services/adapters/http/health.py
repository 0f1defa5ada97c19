"""``GET /healthz``: 200 while this process is healthy, 503 with what is not."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from litestar import MediaType, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec

from turnlog.contracts import query as q

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
