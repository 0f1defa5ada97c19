"""Payloads of events about a user across sessions: their erasure and their integrations."""

from __future__ import annotations

from typing import Any, ClassVar

from turnlog.contracts.event_payload import EventPayload


class UserErased(EventPayload, frozen=True, kw_only=True):
    """Recorded when a user's personal data is erased (``turnlog erase-user``): the keys
    named by ``key_generations`` were destroyed in the same transaction, so every field
    sealed with them now reads as erased. ``apps``: the apps that held the user's data
    (empty in erasures recorded before it existed); the relay publishes the event to
    each of them as the erasure notice for their bus consumers."""

    TYPE: ClassVar[str] = "user.erased"
    user_id: str
    reason: str
    key_generations: tuple[int, ...]
    apps: tuple[str, ...] = ()


USER_PAYLOADS: tuple[type[EventPayload], ...] = (UserErased,)


class IntegrationConnected(EventPayload, frozen=True, kw_only=True):
    """Recorded when an integration is connected for a user, or connected again with new
    credentials, on the user's own stream (``integrations:<uuid5 of the id>``). The
    credentials are sealed with the user's key and only the integrations service opens
    them: every other reader sees ``{"_withheld": true}``, ``{"_erased": true}`` once
    the user is erased."""

    TYPE: ClassVar[str] = "integration.connected"
    PERSONAL: ClassVar[tuple[str, ...]] = ("credentials",)
    SECRET: ClassVar[tuple[str, ...]] = ("credentials",)
    user_id: str
    type: str
    credentials: dict[str, Any]
    scopes: tuple[str, ...] = ()


class IntegrationDisconnected(EventPayload, frozen=True, kw_only=True):
    """Recorded when a connected integration is disconnected: its credentials are no
    longer handed to the user's handlers."""

    TYPE: ClassVar[str] = "integration.disconnected"
    user_id: str
    type: str
    reason: str = ""


INTEGRATION_PAYLOADS: tuple[type[EventPayload], ...] = (
    IntegrationConnected,
    IntegrationDisconnected,
)
