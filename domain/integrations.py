"""A user's integrations: which are connected, with what credentials, since when.

One stream per user holds them (``integration.connected`` / ``integration.disconnected``),
named after the user; commands check their rules, then trigger the events the caller
appends at the version the record was loaded at.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate

from turnlog.domain.errors import DomainError, InvalidValue
from turnlog.domain.values import bounded_json, empty, name

TYPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
MAX_CREDENTIAL_BYTES = 64 * 1024
_STREAMS = uuid.UUID("0f5e4c1a-47c9-4f7e-a7f1-5d2f0e6c9b84")


class IntegrationError(DomainError):
    """Raised when an integration command would break one of its rules: a type name that
    is not a word, credentials that are not a non-empty JSON object, bad scopes."""

    code = "integration_error"


@dataclass(frozen=True)
class Connection:
    """A connected integration: its credentials as the reader could open them."""

    type: str
    credentials: dict[str, Any]
    scopes: tuple[str, ...]
    connected_at: datetime
    connected_by: str | None


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


class UserIntegrations(Aggregate):
    """The integrations of one user. Their stream exists from the first connection, so
    a record starts empty (``new``) at version 0 rather than with a creation event."""

    class Connected(Aggregate.Event):
        user_id: str
        type: str
        credentials: dict[str, Any]
        scopes: tuple[str, ...]
        actor: str | None  # who connected it: the record's actor, not in the payload

        def apply(self, record: UserIntegrations) -> None:
            record.connected[self.type] = Connection(
                self.type, self.credentials, tuple(self.scopes), self.timestamp, self.actor
            )

    class Disconnected(Aggregate.Event):
        user_id: str
        type: str
        reason: str

        def apply(self, record: UserIntegrations) -> None:
            record.connected.pop(self.type, None)

    user_id: str
    connected: dict[str, Connection]

    @classmethod
    def new(cls, user_id: str) -> UserIntegrations:
        """The record of a user nothing was connected for yet (version 0)."""
        record = empty(cls, uuid.uuid5(_STREAMS, user_id))
        record.user_id, record.connected = user_id, {}
        return record

    # -- commands -----------------------------------------------------------------------

    def connect(
        self,
        type: str,
        credentials: Mapping[str, Any],
        scopes: Sequence[str],
        at: datetime,
        actor: str | None = None,
    ) -> None:
        """Connect ``type`` with ``credentials`` (again: the new ones replace the old)."""
        self.trigger_event(
            self.Connected,
            user_id=self.user_id,
            type=integration_type(type),
            credentials=credentials_object(credentials),
            scopes=scope_names(scopes),
            actor=actor,
            timestamp=at,
        )

    def disconnect(self, type: str, reason: str, at: datetime) -> bool:
        """Disconnect ``type``; False (and nothing recorded) when it is not connected."""
        if integration_type(type) not in self.connected:
            return False
        self.trigger_event(
            self.Disconnected, user_id=self.user_id, type=type, reason=reason, timestamp=at
        )
        return True
