"""What the event store writes and reads: events to append and events as recorded."""

from __future__ import annotations

from datetime import datetime

import msgspec


class NewEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event about to be appended: its payload is already encoded."""

    type: str
    schema_version: int
    payload: bytes
    recorded_at: datetime
    correlation_id: str | None = None
    causation_id: str | None = None
    actor: str | None = None


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event as stored: its place in the global log and in its stream, and its hash."""

    position: int
    stream_id: str
    version: int
    type: str
    schema_version: int
    payload: bytes
    recorded_at: datetime
    correlation_id: str | None
    causation_id: str | None
    actor: str | None
    prev_hash: bytes
    hash: bytes


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The encoded state of a stream as of ``version``, with that event's hash."""

    stream_id: str
    version: int
    type: str
    schema_version: int
    state: bytes
    hash: bytes


_app_of = msgspec.json.Decoder(dict[str, object])


def app_of(payload: bytes) -> str:
    """The app a stream is published under, from its first event's payload (``_`` for
    a stream of no app: a user's erasures, their integrations)."""
    app = _app_of.decode(payload).get("app")
    return app if isinstance(app, str) and app else "_"
