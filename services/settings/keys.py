"""API keys (``TURNLOG_API_KEYS``): comma-separated ``KEY:SCOPE`` entries, where SCOPE is
``admin``, ``read`` or ``read:user=<user id>``; checked when settings are read."""

from __future__ import annotations

from dataclasses import dataclass

from turnlog.domain import values
from turnlog.domain.errors import DomainError
from turnlog.services.settings.base import ConfigError


@dataclass(frozen=True)
class ApiKey:
    """One key and what it may see: ``scope`` ``admin``, ``read`` or ``user`` (then
    ``user_id``)."""

    key: str
    scope: str
    user_id: str | None = None


def api_keys(text: str) -> tuple[ApiKey, ...]:
    """The keys in ``text``; ConfigError for a malformed entry, never quoting a key."""
    keys = []
    for entry in filter(None, (e.strip() for e in text.split(","))):
        key, _, scope = entry.partition(":")
        if len(key) < 16:
            raise ConfigError(f"TURNLOG_API_KEYS: key {key[:4]}... is shorter than 16 characters")
        if scope in ("admin", "read"):
            keys.append(ApiKey(key, scope))
        elif scope.startswith("read:user=") and len(scope) > len("read:user="):
            keys.append(ApiKey(key, "user", _user(scope.removeprefix("read:user="), key)))
        else:
            raise ConfigError(
                f"TURNLOG_API_KEYS: scope {scope!r} of key {key[:4]}... is not admin, read"
                " or read:user=<id>"
            )
    return tuple(keys)


def _user(user_id: str, key: str) -> str:
    try:
        return values.user_id(user_id, "the user id")
    except DomainError as e:
        raise ConfigError(f"TURNLOG_API_KEYS: key {key[:4]}...: {e}") from None
