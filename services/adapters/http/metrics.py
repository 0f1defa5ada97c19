"""``GET /metrics``: the process's metrics, in the text format Prometheus scrapes."""

from __future__ import annotations

from collections.abc import Callable

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler

Render = Callable[[], bytes]
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metrics_route(render: Render, content_type: str = CONTENT_TYPE) -> HTTPRouteHandler:
    """``GET /metrics`` answering what ``render`` gives (no key: counts, no user data)."""

    @get("/metrics", include_in_schema=False, sync_to_thread=False)
    def metrics() -> Response[bytes]:
        return Response(render(), media_type=content_type)

    return metrics
