"""The HTTP status of each error code (a ``TurnlogError``'s ``code``) the HTTP API answers
with; the body says the code itself (``{"code", "message"}``)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

HTTP_STATUS: Mapping[str, int] = MappingProxyType(
    {
        "invalid_request": 400,  # InvalidRequest; an app route's ParameterError
        "invalid_text": 400,  # the text policy, in an app route's input
        "too_deep": 400,
        "invalid_user": 400,
        "unauthorized": 401,  # Unauthorized; AuthenticationRequired in an app route
        "forbidden": 403,
        "not_found": 404,
        "prompt_refused": 409,
        "too_large": 413,  # PayloadTooLarge: an upload over the file store's limit
    }
)

DEFAULT_STATUS = 500
"""The status of every other code: whatever else reaches the API is answered as an
internal error (code ``internal``), its details logged, never shown."""


def http_status(code: str) -> int:
    """The HTTP status an error of ``code`` is answered with."""
    return HTTP_STATUS.get(code, DEFAULT_STATUS)
