"""Users' integrations: connected and disconnected on record, their credentials sealed
with the user's key, handed to that user's handlers, and announced on NATS.

Each user's integrations are a stream of their own (``integrations:<uuid5 of the id>``,
safe in a NATS subject). ``integration.connected`` carries the credentials sealed with
the user's key (see services/sealing.py), and they are secret: every reader of the log
but ``Integrations.for_user`` leaves them closed, so they are never in clear in the log,
the projections, the relayed events or the logs. ``turnlog erase-user`` shreds them with
the rest of the user's data. Once a change is on record, ``IntegrationChanged`` (user,
type, connected: never the credentials) is published on ``<prefix>.integrations.<user>``
so runtimes can refresh what their handlers see; ``watch`` subscribes to it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec
import structlog

from turnlog.domain import values
from turnlog.domain.errors import DomainError
from turnlog.domain.integrations import Connection, IntegrationError, UserIntegrations
from turnlog.services.app.aggregates import AggregateStore
from turnlog.services.app.log.errors import ConcurrencyConflict
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.ports import Clock, EventLog, NoNotices, Notices, system_clock
from turnlog.services.app.sealing import KeyRing
from turnlog.services.app.values import UserInfo

log = structlog.get_logger("turnlog.integrations")

_STREAMS = uuid.UUID("0d5a3f7e-2b61-4c8a-9e47-31c6f0a8b2d4")
_ERASED = {"_erased": True}
_ATTEMPTS = 5
_encode = msgspec.json.Encoder().encode

"""``callback(user_id, type, connected)`` for ``watch``."""


def integrations_stream(user_id: str) -> str:
    """The stream of ``user_id``'s integrations."""
    return f"integrations:{uuid.uuid5(_STREAMS, user_id)}"


def erased(connection: Connection) -> bool:
    """Whether the connection's credentials were shredded by an erasure of its user."""
    return connection.credentials == _ERASED


class Integrations:
    """Connect, disconnect and read users' integrations on ``store``; each change on
    record is announced through ``notices`` (to runtimes elsewhere)."""

    def __init__(
        self,
        store: EventLog,
        keyring: KeyRing | None = None,
        *,
        notices: Notices | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.store = store
        self.aggregates = AggregateStore(store)
        self.clock = clock
        self.keyring = keyring or store.keyring
        self.notices = notices or NoNotices()

    async def connect(
        self,
        user_id: str,
        type: str,
        credentials: Mapping[str, Any],
        *,
        actor: str,
        scopes: Sequence[str] = (),
        correlation_id: str | None = None,
    ) -> None:
        """Record ``type`` connected for ``user_id`` with ``credentials`` (a non-empty
        JSON object, e.g. ``{"token": ...}``); connecting again replaces them.
        Raises ``IntegrationError`` for a bad type name, credentials or scopes."""

        def change(record: UserIntegrations, at: datetime) -> bool:
            record.connect(type, credentials, scopes, at, actor)
            return True

        await self._record(user_id, change, actor, correlation_id)
        log.info("integration connected", user_id=user_id, type=type, actor=actor)
        await self._announce(user_id, type, connected=True)

    async def disconnect(
        self,
        user_id: str,
        type: str,
        *,
        actor: str,
        reason: str = "",
        correlation_id: str | None = None,
    ) -> bool:
        """Record ``type`` disconnected; False (nothing recorded) if it was not connected."""

        def change(record: UserIntegrations, at: datetime) -> bool:
            return record.disconnect(type, reason, at)

        if not await self._record(user_id, change, actor, correlation_id):
            return False
        log.info("integration disconnected", user_id=user_id, type=type, actor=actor)
        await self._announce(user_id, type, connected=False)
        return True

    async def for_user(self, user_id: str) -> dict[str, dict[str, Any]]:
        """``user_id``'s connected integrations: type -> credentials, unsealed. Those an
        erasure of the user shredded are left out (the user connects them again)."""
        record = await self._load(user_id, secrets=True)
        return {t: dict(c.credentials) for t, c in record.connected.items() if not erased(c)}

    async def for_caller(self, user: UserInfo | None) -> Mapping[str, Any]:
        """``for_user`` of a request's caller; nothing when nobody is calling."""
        return {} if user is None else await self.for_user(user.id)

    async def connections(self, user_id: str) -> list[Connection]:
        """``user_id``'s connected integrations by type, credentials withheld
        (``{"_withheld": true}``, or ``{"_erased": true}`` after an erasure)."""
        record = await self._load(user_id, secrets=False)
        return sorted(record.connected.values(), key=lambda c: c.type)

    # -- the stream ---------------------------------------------------------------------

    async def _load(self, user_id: str, *, secrets: bool) -> UserIntegrations:
        empty = UserIntegrations.new(user_id)
        stream = integrations_stream(user_id)
        record = await self.aggregates.load(stream, empty.id, empty, secrets=secrets)
        assert record is not None
        return record

    async def _record(
        self,
        user_id: str,
        change: Callable[[UserIntegrations, datetime], bool],
        actor: str,
        correlation_id: str | None,
    ) -> bool:
        """Load the record, apply ``change``, append what it records (sealed) at the
        version loaded; again on a concurrent write. False when it records nothing."""
        try:
            values.name(user_id, "user id")
        except DomainError as e:
            raise IntegrationError(str(e)) from None
        stream = integrations_stream(user_id)
        for attempt in range(_ATTEMPTS):
            record = await self._load(user_id, secrets=False)
            at = self.clock()
            if not change(record, at):
                return False
            meta = Metadata(correlation_id=correlation_id, actor=actor)
            try:
                async with self.store.transaction() as conn:
                    await self.aggregates.save(stream, record, meta, user=user_id, holding=conn)
            except ConcurrencyConflict:
                if attempt == _ATTEMPTS - 1:
                    raise
                continue
            self.store.announce()
            return True
        raise AssertionError("unreachable")

    async def _announce(self, user_id: str, type: str, *, connected: bool) -> None:
        await self.notices.integration_changed(user_id, type, connected)
