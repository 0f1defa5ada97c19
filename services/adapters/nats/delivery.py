"""Live output on core NATS: ``turnlog.live.<app>.<session_id>``."""

from __future__ import annotations

from uuid import UUID

import msgspec
from nats.aio.client import Client as NATS

from turnlog.contracts import bus
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.app.sessions.outbound import Chunk, Notification, Outbound, Reply

_encode = msgspec.json.Encoder().encode


def to_live(session_id: str, item: Outbound) -> bus.Live:
    if isinstance(item, Chunk):
        return bus.LiveChunk(session_id=session_id, stream_id=item.stream_id, text=item.text)
    if isinstance(item, Notification):
        return bus.LiveNotification(session_id=session_id, text=item.text)
    if isinstance(item, Reply):
        return bus.LiveReply(
            session_id=session_id,
            text=item.text,
            streamed=item.streamed,
            interrupted=item.interrupted,
        )
    return bus.LiveBlock(
        session_id=session_id, block_id=item.id, block_type=item.type, payload=item.payload
    )


class BusDelivery:
    """Delivers what sessions show by publishing it on their live subject."""

    def __init__(self, nc: NATS, subjects: Subjects, app: str) -> None:
        self.nc = nc
        self.subjects = subjects
        self.app = app

    async def deliver(self, session_id: UUID, item: Outbound) -> None:
        sid = str(session_id)
        await self.nc.publish(self.subjects.live(self.app, sid), _encode(to_live(sid, item)))

    async def done(
        self, session_id: str, message_id: str, outcome: str, error: str | None = None
    ) -> None:
        live = bus.LiveDone(
            session_id=session_id, message_id=message_id, outcome=outcome, error=error
        )
        await self.nc.publish(self.subjects.live(self.app, session_id), _encode(live))
