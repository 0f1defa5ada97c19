"""API keys and what each may see.

Keys come from configuration (``TURNLOG_API_KEYS``): comma-separated ``KEY:SCOPE``
entries, where SCOPE is ``admin``, ``read`` or ``read:user=<user id>``. A user-scoped
key sees only that user's sessions and documents.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from turnlog.domain.errors import TurnlogError
from turnlog.services.settings import api_keys

log = structlog.get_logger("turnlog.query")

MAX_LIMIT = 500
"""The largest page a query returns."""


class QueryFailure(TurnlogError):
    """Base of the errors a query (over HTTP or NATS) answers with: the caller may not
    make it, or it cannot be answered. ``code`` is what the answer's error says; the HTTP
    status comes from the HTTP adapter's table of codes."""

    code = "query_failure"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class Unauthorized(QueryFailure):
    """Raised when a request presents no API key, or one that is not configured."""

    code = "unauthorized"


class Forbidden(QueryFailure):
    """Raised when the key presented may not see or do what the request asks."""

    code = "forbidden"


class NotFound(QueryFailure):
    """Raised when the request names what does not exist (or what its key may not see)."""

    code = "not_found"


class InvalidRequest(QueryFailure):
    """Raised when a parameter, cursor or body of the request cannot be used."""

    code = "invalid_request"


class PayloadTooLarge(QueryFailure):
    """Raised when an upload, or the reply to a query, is larger than allowed."""

    code = "too_large"


class PromptRefused(QueryFailure):
    """Raised when the runtime refuses an answer to a prompt (none waits, or the answer
    does not fit it)."""

    code = "prompt_refused"


def unauthorized(message: str = "a valid API key is required") -> QueryFailure:
    return Unauthorized(message)


def forbidden(message: str) -> QueryFailure:
    return Forbidden(message)


def not_found(message: str) -> QueryFailure:
    return NotFound(message)


def invalid(message: str) -> QueryFailure:
    return InvalidRequest(message)


def input_failure(
    exc: BaseException, refuses: Callable[[BaseException], bool]
) -> QueryFailure | None:
    """``exc`` as the 400 it stands for when the caller's input caused it past the
    service's own checks: a value the store ``refuses`` (for PostgreSQL a NUL character,
    a number out of range), a string that cannot be encoded, a cursor whose contents do
    not parse. ``None`` when it is not one of those (a bug or an outage: a 500)."""
    if isinstance(exc, QueryFailure):
        return exc
    if refuses(exc) or isinstance(exc, ValueError):
        log.info("query input refused", error=repr(exc))
        return invalid(f"a value in the request cannot be used: {str(exc)[:300]}")
    return None


@dataclass(frozen=True)
class Principal:
    """Who is asking: ``scope`` is ``admin``, ``read`` or ``user`` (then ``user_id``)."""

    scope: str
    user_id: str | None = None

    @property
    def everyone(self) -> bool:
        return self.scope in ("admin", "read")


def parse_keys(text: str) -> dict[str, Principal]:
    """The principal of each key in ``text`` (``TURNLOG_API_KEYS``); ConfigError for a
    malformed entry."""
    return {k.key: Principal(k.scope, k.user_id) for k in api_keys(text)}


class Keys:
    def __init__(self, keys: dict[str, Principal]) -> None:
        self._keys = keys

    def authenticate(self, presented: str | None) -> Principal:
        """The principal of ``presented`` (compared in constant time), or 401."""
        if not self._keys:
            raise unauthorized("no API keys are configured (set TURNLOG_API_KEYS)")
        if presented:
            for key, principal in self._keys.items():
                if hmac.compare_digest(key.encode(), presented.encode()):
                    return principal
        raise unauthorized()
