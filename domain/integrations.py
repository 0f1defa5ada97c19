"""A user's integrations: which are connected, with what credentials, since when.

One stream per user holds them (``integration.connected`` / ``integration.disconnected``).
Like a schedule's record, it is small and named rather than numbered, so it is folded
straight from its payloads; commands check their rules, then add pending payloads that
the caller appends at the version the record was folded at.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from turnlog.contracts import events as ev
from turnlog.domain.errors import DomainError, InvalidValue
from turnlog.domain.values import bounded_json, name

TYPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
MAX_CREDENTIAL_BYTES = 64 * 1024


class IntegrationError(DomainError):
    """Raised when an integration command would break one of its rules: a type name that
    is not a word, credentials that are not a non-empty JSON object, bad scopes."""


@dataclass(frozen=True)
class Connection:
    """A connected integration: its credentials as the reader could open them."""

    type: str
    credentials: dict[str, Any]
    scopes: tuple[str, ...]
    connected_at: datetime
    connected_by: str | None


@dataclass(frozen=True)
class Fact:
    """One event of the stream as the record folds it."""

    payload: ev.EventPayload
    at: datetime
    actor: str | None = None


def integration_type(value: object) -> str:
    """``value`` if it names an integration type: letters, digits, ``_`` and ``-``, 1 to
    64 characters, starting with a letter or digit (``github``, ``google-drive``)."""
    if not isinstance(value, str) or not TYPE_NAME.fullmatch(value):
        raise IntegrationError(
            f"an integration type is a word of letters, digits, '_' or '-' (at most 64),"
            f" not {str(value)[:80]!r}"
        )
    return value


def credentials_object(value: object) -> dict[str, Any]:
    """``value`` as plain-JSON credentials: a non-empty object with str keys, at most
    64 KiB encoded. Errors name the field, never its value."""
    if not isinstance(value, Mapping) or not value:
        raise IntegrationError('credentials must be a non-empty JSON object, e.g. {"token": ...}')
    try:
        plain: dict[str, Any] = bounded_json(dict(value), "credentials", MAX_CREDENTIAL_BYTES)
    except DomainError as e:
        raise IntegrationError(str(e)) from None
    return plain


def scope_names(values: Iterable[str]) -> tuple[str, ...]:
    if isinstance(values, str):
        raise IntegrationError("scopes must be a list of names, not one str")
    try:
        return tuple(name(v, "an integration scope") for v in values)
    except InvalidValue as e:
        raise IntegrationError(str(e)) from None


class UserIntegrations:
    """The integrations of one user, folded from their stream."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.version = 0
        self.connected: dict[str, Connection] = {}
        self._pending: list[ev.EventPayload] = []

    @classmethod
    def fold(cls, user_id: str, facts: Iterable[Fact]) -> UserIntegrations:
        record = cls(user_id)
        for fact in facts:
            record._apply(fact)
        return record

    # -- commands -----------------------------------------------------------------------

    def connect(
        self, type: str, credentials: Mapping[str, Any], scopes: Sequence[str], at: datetime
    ) -> None:
        """Connect ``type`` with ``credentials`` (again: the new ones replace the old)."""
        payload = ev.IntegrationConnected(
            user_id=self.user_id,
            type=integration_type(type),
            credentials=credentials_object(credentials),
            scopes=scope_names(scopes),
        )
        self._trigger(Fact(payload, at))

    def disconnect(self, type: str, reason: str, at: datetime) -> bool:
        """Disconnect ``type``; False (and nothing recorded) when it is not connected."""
        if integration_type(type) not in self.connected:
            return False
        payload = ev.IntegrationDisconnected(user_id=self.user_id, type=type, reason=reason)
        self._trigger(Fact(payload, at))
        return True

    def collect(self) -> tuple[int, list[ev.EventPayload]]:
        """The version the pending events follow, and the events; forgets them."""
        pending, self._pending = self._pending, []
        return self.version - len(pending), pending

    # -- folding ------------------------------------------------------------------------

    def _trigger(self, fact: Fact) -> None:
        self._apply(fact)
        self._pending.append(fact.payload)

    def _apply(self, fact: Fact) -> None:
        p = fact.payload
        if isinstance(p, ev.IntegrationConnected):
            self.connected[p.type] = Connection(
                p.type, p.credentials, p.scopes, fact.at, fact.actor
            )
        elif isinstance(p, ev.IntegrationDisconnected):
            self.connected.pop(p.type, None)
        self.version += 1
