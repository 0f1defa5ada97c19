"""Small builders shared by the tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec

from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.app.log.records import NewEvent
from turnlog.services.app.sessions.outbound import NoDelivery
from turnlog.services.app.sessions.turn import Inbound
from turnlog.services.bootstrap.wiring import Wiring
from turnlog.services.sdk.app import App
from turnlog.services.sdk.types import SessionChannel, UserInfo


def said(text: str, type_name: str = "test.said", schema_version: int = 1) -> NewEvent:
    """A stored test event whose payload is ``{"text": text}``."""
    return NewEvent(
        type=type_name,
        schema_version=schema_version,
        payload=msgspec.json.encode({"text": text}),
        recorded_at=datetime.now(UTC),
        correlation_id="corr-1",
        actor="user:u1",
    )


def inbound(
    text: str,
    user: UserInfo,
    session_id: uuid.UUID | None = None,
    *,
    channel: str = "test",
    message_id: str | None = None,
) -> Inbound:
    """A message from ``user``, for ``SessionHost.handle`` (a new session without an id)."""
    return Inbound(
        message_id=message_id or uuid.uuid4().hex,
        text=text,
        user=user,
        session_id=session_id,
        channel=SessionChannel(type=channel),
    )


ALICE = UserInfo(id="alice")


async def converse(
    store: EventStore, app: App, texts: list[str], user: UserInfo = ALICE
) -> uuid.UUID:
    """One session of ``app`` in which ``user`` sends ``texts``, a turn each; its id."""
    host = Wiring.postgres(store).host(app, NoDelivery())
    sid = None
    try:
        for text in texts:
            result = await host.handle(inbound(text, user, sid))
            sid = result.session_id
    finally:
        await host.stop()
    assert sid is not None
    return sid
