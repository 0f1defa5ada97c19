"""The query API's OpenAPI document, ``GET /openapi.json``: its routes (not an app's), with
the API key as their security scheme."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Response, Router
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from turnlog.services.adapters.http.auth import SECURITY
from turnlog.services.adapters.http.error_handlers import error_response

TITLE = "turnlog query API"
API_VERSION = "1"


def openapi_config() -> OpenAPIConfig:
    """The document's configuration: served as JSON, its own route the only one."""
    return OpenAPIConfig(
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
    )


def _schema_not_found(response: Response[Any]) -> Response[Any]:
    """Litestar's OpenAPI router answers unknown paths under it with an HTML page."""
    if response.status_code == 404:
        return error_response(404, "not_found", "no such route")
    return response
