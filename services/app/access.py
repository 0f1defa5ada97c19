"""API keys and what each may see.

Keys come from configuration (``TURNLOG_API_KEYS``): comma-separated ``KEY:SCOPE``
entries, where SCOPE is ``admin``, ``read`` or ``read:user=<user id>``. A user-scoped
key sees only that user's sessions and documents.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from turnlog.services.settings import api_keys


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
