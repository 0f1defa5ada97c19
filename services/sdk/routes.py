"""An app's HTTP handlers, ``@app.data`` and ``@app.endpoint``: declared and checked here,
then called with the request's parameters converted to the types their signatures name.

Keyword arguments come from the path (``{name}`` segments), the JSON body (its object's
keys; a parameter named ``body`` takes the whole body instead) and the query string, each
converted with ``msgspec.convert`` to the parameter's annotation (strings by default). A
parameter annotated ``RequestContext`` gets the caller.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from turnlog.domain.errors import TurnlogError
from turnlog.services.sdk.request import RequestContext

ACCESS = ("public", "authenticated")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
RESERVED = ("v1", "data", "healthz", "openapi.json")  # first path segments turnlog serves
BODY = "body"
NO_BODY: Any = object()

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SEGMENT = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@%-]+|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MANY = (list, tuple, set, frozenset)


class RouteError(TurnlogError):
    """Raised when a data or endpoint handler is declared wrongly: a bad name, access,
    method or path, a path parameter the handler does not take, or a clash."""

    code = "route_error"


class ParameterError(TurnlogError):
    """Raised when a request's parameters do not fit its handler: one is missing, given
    twice, or cannot be converted to its annotated type."""

    code = "invalid_request"

    def __init__(self, name: str, problem: str) -> None:
        self.name, self.problem = name, problem
        super().__init__(f"parameter {name!r}: {problem}")


@dataclass
class Route:
    """One handler: ``GET /data/<name>`` or ``METHOD path``; ``protected`` ones need an
    authenticated caller."""

    fn: Callable[..., Any]
    method: str
    path: str
    protected: bool
    path_params: tuple[str, ...]
    _hints: dict[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._params = _parameters(self.fn)
        self._takes_any = _takes_any(self.fn)

    def bind(
        self,
        ctx: RequestContext,
        path: Mapping[str, str],
        query: Mapping[str, Sequence[str]],
        body: Any = NO_BODY,
    ) -> dict[str, Any]:
        """The keyword arguments to call the handler with; raises ParameterError."""
        hints = self.hints()
        context = [n for n in self._params if hints.get(n) is RequestContext]
        given = self._gather(path, query, body, skip=context)
        kwargs = {n: _convert(n, where, v, hints.get(n)) for n, (where, v) in given.items()}
        for name in context:
            kwargs[name] = ctx
        for name, param in self._params.items():
            if name not in kwargs and param.default is inspect.Parameter.empty:
                raise ParameterError(name, "missing")
        return kwargs

    def _gather(
        self,
        path: Mapping[str, str],
        query: Mapping[str, Sequence[str]],
        body: Any,
        skip: Sequence[str],
    ) -> dict[str, tuple[str, Any]]:
        """Each parameter the handler takes, with where it came from and its raw value."""
        given: dict[str, tuple[str, Any]] = {}

        def give(where: str, name: str, value: Any) -> None:
            if name in skip or (name not in self._params and not self._takes_any):
                return
            if name in given:
                raise ParameterError(name, f"given both in the {given[name][0]} and the {where}")
            given[name] = (where, value)

        for name, value in path.items():
            give("path", name, value)
        if body is not NO_BODY:
            if BODY in self._params:
                give("body", BODY, body)
            elif isinstance(body, dict):
                for name, value in body.items():
                    give("body", name, value)
            else:
                raise ParameterError(BODY, "the JSON body must be an object")
        for name, values in query.items():
            give("query", name, values)
        return given

    async def call(self, kwargs: dict[str, Any]) -> Any:
        result = self.fn(**kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    def hints(self) -> dict[str, Any]:
        """The handler's annotations, resolved on first use (so they may name types
        defined after the handler)."""
        if self._hints is None:
            self._hints = typing.get_type_hints(self.fn)
        return self._hints


class Routes:
    """The data and endpoint handlers of one app."""

    def __init__(self) -> None:
        self.data: dict[str, Route] = {}
        self.endpoints: dict[tuple[str, str], Route] = {}  # (method, path shape) -> route

    def add_data(self, name: str, access: str, fn: Callable[..., Any]) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise RouteError(f"a data handler's name is a word of letters, digits, _ . -: {name!r}")
        if access not in ACCESS:
            raise RouteError(f"access must be one of {', '.join(ACCESS)}, not {access!r}")
        _check_signature(fn, ())
        if name in self.data:
            raise RouteError(
                f"data handler {name!r} is already declared ({_name(self.data[name])})"
            )
        self.data[name] = Route(fn, "GET", f"/data/{name}", access == "authenticated", ())

    def add_endpoint(
        self, method: str, path: str, authorized: bool, fn: Callable[..., Any]
    ) -> None:
        method = method.upper() if isinstance(method, str) else method
        if method not in METHODS:
            raise RouteError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
        params, shape = _parse_path(path)
        _check_signature(fn, params)
        existing = self.endpoints.get((method, shape))
        if existing is not None:
            raise RouteError(
                f"{method} {path} is already declared ({_name(existing)} at {existing.path})"
            )
        self.endpoints[(method, shape)] = Route(fn, method, path, bool(authorized), params)

    def __bool__(self) -> bool:
        return bool(self.data or self.endpoints)


def _parse_path(path: str) -> tuple[tuple[str, ...], str]:
    """The path parameters of ``path`` and its shape (parameters unnamed)."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise RouteError(f"an endpoint path starts with '/': {path!r}")
    segments = path.strip("/").split("/") if path.strip("/") else []
    params: list[str] = []
    for segment in segments:
        match = _SEGMENT.fullmatch(segment)
        if match is None:
            raise RouteError(f"path {path!r}: segment {segment!r} is neither text nor {{name}}")
        if match.group(1):
            if match.group(1) in params:
                raise RouteError(f"path {path!r} names parameter {match.group(1)!r} twice")
            params.append(match.group(1))
    if segments and segments[0] in RESERVED:
        raise RouteError(f"path {path!r}: /{segments[0]} is served by turnlog itself")
    shape = "/" + "/".join("{}" if s.startswith("{") else s for s in segments)
    return tuple(params), shape


def _parameters(fn: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    return {
        name: p
        for name, p in inspect.signature(fn).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def _takes_any(fn: Callable[..., Any]) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())


def _check_signature(fn: Callable[..., Any], path_params: Sequence[str]) -> None:
    if not callable(fn):
        raise RouteError(f"a handler is a function, not {fn!r}")
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL):
            raise RouteError(f"{_qualname(fn)}: parameters are passed by name, not {p}")
    for name in path_params:
        if name not in _parameters(fn) and not _takes_any(fn):
            raise RouteError(f"{_qualname(fn)} takes no parameter {name!r} for its path")


def _convert(name: str, where: str, value: Any, annotation: Any) -> Any:
    if where == "query" and not _many(annotation):
        value = value[-1]
    if annotation in (None, Any, str) and isinstance(value, str):
        return value
    if annotation is None:
        return value
    try:
        return msgspec.convert(value, annotation, strict=False)
    except msgspec.ValidationError as e:
        raise ParameterError(name, str(e)) from None


def _many(annotation: Any) -> bool:
    """Whether a query parameter takes every value given (``list[int]``...) or the last."""
    kinds = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    return any(k in _MANY or typing.get_origin(k) in _MANY for k in kinds)


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _qualname(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", repr(fn))


def _name(route: Route) -> str:
    return _qualname(route.fn)
