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

from turnlog.services.settings import api_keys

log = structlog.get_logger("turnlog.query")

MAX_LIMIT = 500
"""The largest page a query returns."""


class QueryFailure(Exception):
    """Raised by a query the caller may not make or that cannot be answered; carries the
    code and HTTP status the API reports."""

    def __init__(self, code: str, message: str, status: int) -> None:
        self.code, self.message, self.status = code, message, status
        super().__init__(message)


def unauthorized(message: str = "a valid API key is required") -> QueryFailure:
    return QueryFailure("unauthorized", message, 401)


def forbidden(message: str) -> QueryFailure:
    return QueryFailure("forbidden", message, 403)


def not_found(message: str) -> QueryFailure:
    return QueryFailure("not_found", message, 404)


def invalid(message: str) -> QueryFailure:
    return QueryFailure("invalid_request", message, 400)


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
