"""Who an HTTP request comes from: the API key it presents (``Authorization: Bearer``)."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import Provide

from turnlog.services.app.access import Keys, Principal

SECURITY = "bearer"
"""The API key's security scheme in the OpenAPI document; each router needing a key
names it (``security=[{SECURITY: []}]``)."""


def bearer(request: Request[Any, Any, Any]) -> str | None:
    """The key a request presents (``Authorization: Bearer <key>``), if any."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def caller(keys: Keys) -> Provide:
    """The ``who`` dependency of a router: the principal of the request's key, or 401."""

    def authenticate(request: Request[Any, Any, Any]) -> Principal:
        return keys.authenticate(bearer(request))

    return Provide(authenticate, sync_to_thread=False)
