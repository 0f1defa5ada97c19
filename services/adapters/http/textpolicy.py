"""The text policy at the HTTP boundary: a request whose path, query parameters,
``X-Turnlog-User`` header or JSON body holds text turnlog does not store (U+0000, a lone
surrogate, bytes that are not UTF-8; JSON nested too deeply; see
``turnlog.domain.values``) is answered 400 ``invalid_request`` before any route sees it,
its message naming the problem (``invalid_text`` or ``too_deep``) and where."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote_to_bytes

import msgspec

from turnlog.domain import values
from turnlog.domain.errors import DomainError
from turnlog.services.app.text import Problem, body_problem

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CHECKED_HEADERS = (b"x-turnlog-user",)
MAX_CHECKED_BODY = 4 << 20
_encode = msgspec.json.Encoder().encode


def text_policy(app: ASGIApp) -> ASGIApp:
    """ASGI middleware refusing requests that break the text policy (Litestar's
    ``middleware=[text_policy]``)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        problem = head_problem(scope)
        if problem is None and _is_json(scope):
            body, receive = await _buffered(receive)
            problem = body_problem(body)
        if problem is not None:
            await _refuse(send, *problem)
            return
        await app(scope, receive, send)

    return middleware


def head_problem(scope: Scope) -> Problem | None:
    """What in the request's path, query string or checked headers breaks the policy."""
    raw_path = scope.get("raw_path") or str(scope.get("path", "")).encode("utf-8", "replace")
    problem = _text(unquote_to_bytes(raw_path.split(b"?", 1)[0]), "the path")
    if problem is not None:
        return problem
    for pair in bytes(scope.get("query_string", b"")).split(b"&"):
        key, _, value = pair.partition(b"=")
        name = _text(_unquote(key), "a query parameter name")
        if name is not None:
            return name
        label = f"query parameter {_unquote(key).decode('utf-8', 'replace')[:64]!r}"
        problem = _text(_unquote(value), label)
        if problem is not None:
            return problem
    for header, value in scope.get("headers", ()):
        if header.lower() in CHECKED_HEADERS:
            problem = _text(value, f"header {header.decode('latin-1')}")
            if problem is not None:
                return problem
    return None


def _text(raw: bytes, what: str) -> Problem | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return "invalid_text", f"{what} is not UTF-8 (byte {e.start})"
    try:
        values.storable(text, what)
    except DomainError as e:
        return "invalid_text", str(e)
    return None


def _unquote(raw: bytes) -> bytes:
    return unquote_to_bytes(raw.replace(b"+", b" "))


def _is_json(scope: Scope) -> bool:
    for header, value in scope.get("headers", ()):
        if header.lower() == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The body (up to MAX_CHECKED_BODY; a larger one is passed on unchecked, for the
    server's own size limit to refuse), and a ``receive`` that hands it on again."""
    chunks: list[Message] = []
    size, more = 0, True
    while more and size <= MAX_CHECKED_BODY:
        message = await receive()
        chunks.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        more = bool(message.get("more_body", False))
    body = b"".join(m.get("body", b"") for m in chunks if m["type"] == "http.request")

    async def replay() -> Message:
        return chunks.pop(0) if chunks else await receive()

    return (b"" if more else body), replay


async def _refuse(send: Send, problem: str, message: str) -> None:
    body = _encode({"code": "invalid_request", "message": f"{problem}: {message}"})
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
