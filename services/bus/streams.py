"""Creating the JetStream streams, idempotently, at start."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from turnlog.services.bus.subjects import Subjects

# Republishing an event within this window is dropped by JetStream (Nats-Msg-Id = log id +
# position); it covers a relay restart.
DUPLICATE_WINDOW = 15 * 60.0


async def ensure_streams(js: JetStreamContext, subjects: Subjects) -> None:
    """Create the inbound, events and dead-letter streams, or bring their config up to date."""
    for config in (
        StreamConfig(
            name=subjects.stream_in, subjects=[f"{subjects.prefix}.in.>"], duplicate_window=120.0
        ),
        StreamConfig(
            name=subjects.stream_events,
            subjects=[f"{subjects.prefix}.events.>"],
            duplicate_window=DUPLICATE_WINDOW,
        ),
        StreamConfig(name=subjects.stream_dlq, subjects=[f"{subjects.prefix}.dlq.>"]),
    ):
        assert config.name is not None
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
        else:
            await js.update_stream(config)
