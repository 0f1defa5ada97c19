"""The query API's answers to failures: always JSON ``{"code", "message"}``, with the
status of the errors table (``errors.py``); what is internal is logged, never shown."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from turnlog.contracts import query as q
from turnlog.services.adapters.http.errors import http_status
from turnlog.services.app.access import QueryFailure, input_failure
from turnlog.services.app.ports import Queries

log = structlog.get_logger("turnlog.query.http")

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


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response[q.ErrorBody]:
    """The JSON answer ``{"code", "message"}`` with ``status``."""
    return Response(
        q.ErrorBody(code=code, message=message),
        status_code=status,
        media_type=MediaType.JSON,
        headers=dict(headers or {}),
    )


def exception_handlers(service: Queries) -> ExceptionHandlersMap:
    """The app's handlers: a refusal of the queries, one of Litestar's, anything else."""
    return {
        QueryFailure: _on_failure,
        HTTPException: _on_http,
        Exception: _on_exception(service),
    }


def _on_failure(request: Request[Any, Any, Any], exc: QueryFailure) -> Response[q.ErrorBody]:
    status = http_status(exc.code)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return error_response(status, exc.code, exc.message, headers)


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
        return error_response(500, "internal", "internal error")
    if isinstance(exc, ValidationException):
        message = _validation_message(exc)
    elif status == 404:
        message = f"no route {request.method} {request.url.path[:200]}"
    elif status == 405:
        message = f"{request.method} is not allowed on {request.url.path[:200]}"
    else:
        message = exc.detail or "the request cannot be answered"
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() in ("allow",)}
    return error_response(status, _CODES.get(status, "invalid_request"), message, headers)


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
        return error_response(500, "internal", "internal error")

    return on_exception
