"""The base of every stored payload, and the user, channel and file references they carry."""

from __future__ import annotations

from typing import ClassVar

import msgspec


class UserRef(msgspec.Struct, frozen=True, kw_only=True):
    """Who a session belongs to: the app user and, when they have one, their org."""

    id: str
    email: str | None = None
    org_id: str | None = None


class ChannelRef(msgspec.Struct, frozen=True, kw_only=True):
    """The transport a session arrived through (web chat, terminal, a bus producer, ...)."""

    type: str = "chat"
    name: str | None = None


class AttachmentRef(msgspec.Struct, frozen=True, kw_only=True):
    """A file attached to an inbound message, stored elsewhere and referenced by URL."""

    name: str
    content_type: str = "application/octet-stream"
    url: str = ""
    size: int = 0


class EventPayload(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every stored payload. Unknown fields are tolerated on read (forward compatible)."""

    TYPE: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int] = 1
    PERSONAL: ClassVar[tuple[str, ...]] = ()
    """Fields that hold a user's personal data (``outer.inner`` for a field of a nested
    struct): stored sealed with that user's key, so erasing the key erases them (see
    services/sealing.py)."""
    SECRET: ClassVar[tuple[str, ...]] = ()
    """Personal fields that are secrets (credentials): sealed like the others, and left
    closed by every reader but the one that asks for them (``{"_withheld": true}``)."""
