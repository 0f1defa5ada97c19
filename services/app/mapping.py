"""The one mapping between domain events and stored records, for every aggregate
(sessions, documents, tasks, schedules, integrations), and Session state <-> snapshots."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.domain import Aggregate, CanMutateAggregate

from turnlog.contracts import events as wire
from turnlog.domain.document import Document
from turnlog.domain.integrations import UserIntegrations
from turnlog.domain.schedule import ScheduleRecord
from turnlog.domain.session import Session
from turnlog.domain.task import Task
from turnlog.services.app.log.codec import EventCodec
from turnlog.services.app.log.records import NewEvent, RecordedEvent, Snapshot

PAIRS: tuple[tuple[type[Aggregate.Event], type[wire.EventPayload]], ...] = (
    (Session.Started, wire.SessionStarted),
    (Session.MessageReceived, wire.MessageReceived),
    (Session.ReplySent, wire.ReplySent),
    (Session.Notified, wire.Notified),
    (Session.BlockShown, wire.BlockShown),
    (Session.DataSet, wire.DataSet),
    (Session.DataDeleted, wire.DataDeleted),
    (Session.EffectRecorded, wire.EffectRecorded),
    (Session.TurnCompleted, wire.TurnCompleted),
    (Session.TurnInterrupted, wire.TurnInterrupted),
    (Session.TurnResumed, wire.TurnResumed),
    (Session.InputRejected, wire.InputRejected),
    (Session.Ended, wire.SessionEnded),
    (Session.Prompted, wire.Prompted),
    (Session.PromptReceived, wire.PromptReceived),
    (Session.PromptDeclined, wire.PromptDeclined),
    (Session.PromptTimedOut, wire.PromptTimedOut),
    (Session.PromptInterrupted, wire.PromptInterrupted),
    (Document.Inserted, wire.DocumentInserted),
    (Document.Updated, wire.DocumentUpdated),
    (Document.Deleted, wire.DocumentDeleted),
    (Task.Submitted, wire.TaskSubmitted),
    (Task.Started, wire.TaskStarted),
    (Task.Progressed, wire.TaskProgressed),
    (Task.Completed, wire.TaskCompleted),
    (Task.Failed, wire.TaskFailed),
    (Task.Cancelled, wire.TaskCancelled),
    (ScheduleRecord.Fired, wire.ScheduleFired),
    (ScheduleRecord.Skipped, wire.ScheduleSkipped),
    (ScheduleRecord.Interrupted, wire.ScheduleInterrupted),
    (ScheduleRecord.Completed, wire.ScheduleCompleted),
    (UserIntegrations.Connected, wire.IntegrationConnected),
    (UserIntegrations.Disconnected, wire.IntegrationDisconnected),
)
RECORD_FIELDS = ("actor",)
"""Domain event fields the record carries rather than the payload: an event class that
declares one gets the record's value when read back (who connected an integration)."""

_TO_WIRE = dict(PAIRS)
_TO_DOMAIN = {payload.TYPE: event for event, payload in PAIRS}
_TOPICS = {
    cls.TYPE: f"{aggregate.__module__}:{aggregate.__qualname__}"
    for cls, aggregate in (
        (wire.SessionStarted, Session),
        (wire.DocumentInserted, Document),
        (wire.TaskSubmitted, Task),
    )
}
_RECORD_FIELDS = {
    event: tuple(f for f in RECORD_FIELDS if f in event.__dataclass_fields__) for event, _ in PAIRS
}
CODEC = EventCodec(payload for _, payload in PAIRS)
"""Every aggregate's payloads, by type name (with their upcasters)."""

SNAPSHOT_TYPE = "session.snapshot"
SNAPSHOT_SCHEMA_VERSION = 1
_snapshot_encoder = msgspec.json.Encoder()
_state_decoder = msgspec.json.Decoder(dict[str, Any])


def session_codec() -> EventCodec:
    """A codec of the Session's payloads of its own (to register upcasters on)."""
    return EventCodec(wire.SESSION_PAYLOADS)


class Metadata(msgspec.Struct, frozen=True, kw_only=True):
    """Who caused an append and why: carried on every event it writes."""

    correlation_id: str | None = None
    causation_id: str | None = None
    actor: str | None = None


def to_new_event(
    event: CanMutateAggregate[UUID], meta: Metadata, codec: EventCodec = CODEC
) -> NewEvent:
    """The record to append for ``event``, caused as ``meta`` says."""
    payload_type = _TO_WIRE[type(event)]  # type: ignore[index]
    payload = payload_type(**{f: getattr(event, f) for f in payload_type.__struct_fields__})
    correlation_id = meta.correlation_id
    if isinstance(payload, wire.MessageReceived):
        # An inbound message correlates with itself; the log receives each id once.
        correlation_id = payload.message_id
    return NewEvent(
        type=payload_type.TYPE,
        schema_version=payload_type.SCHEMA_VERSION,
        payload=codec.encode(payload),
        recorded_at=event.timestamp,
        correlation_id=correlation_id,
        causation_id=meta.causation_id,
        actor=meta.actor,
    )


def to_domain_event(
    record: RecordedEvent, originator_id: UUID, codec: EventCodec = CODEC
) -> Aggregate.Event:
    """The domain event ``record`` holds, for the aggregate ``originator_id``."""
    payload = codec.decode(record.type, record.schema_version, record.payload)
    fields = {f: getattr(payload, f) for f in payload.__struct_fields__}
    topic = _TOPICS.get(record.type)
    if topic is not None:
        fields["originator_topic"] = topic
    event_type = _TO_DOMAIN[record.type]
    for name in _RECORD_FIELDS[event_type]:
        fields[name] = getattr(record, name)
    return event_type(
        originator_id=originator_id,
        originator_version=record.version,
        timestamp=record.recorded_at,
        **fields,
    )


def take_snapshot(session: Session, last_hash: bytes) -> Snapshot:
    """The session as it is now, with ``last_hash``, the hash of its last event."""
    return snapshot_at(session.id, session.version, snapshot_state(session), last_hash)


def snapshot_state(session: Session) -> bytes:
    """The session's state as it is now, encoded: taken when its events are collected to
    be saved, since a live session goes on changing while they are appended."""
    state = dict(vars(session))
    for private in ("_id", "_version", "_pending_events"):
        state.pop(private)
    return _snapshot_encoder.encode(state)


def snapshot_at(session_id: UUID, version: int, state: bytes, last_hash: bytes) -> Snapshot:
    return Snapshot(
        stream_id=str(session_id),
        version=version,
        type=SNAPSHOT_TYPE,
        schema_version=SNAPSHOT_SCHEMA_VERSION,
        state=state,
        hash=last_hash,
    )


def from_snapshot(snapshot: Snapshot) -> Session:
    """The Session as of the snapshot's version, without replaying its events."""
    state = _state_decoder.decode(snapshot.state)
    state["_id"] = UUID(snapshot.stream_id)
    state["_version"] = snapshot.version
    state["_pending_events"] = []
    state["_created_on"] = datetime.fromisoformat(state["_created_on"])
    state["_modified_on"] = datetime.fromisoformat(state["_modified_on"])
    state["user"] = msgspec.convert(state["user"], wire.UserRef)
    state["channel"] = msgspec.convert(state["channel"], wire.ChannelRef)
    state.setdefault("open_prompt", None)  # snapshots taken before prompts existed
    session = object.__new__(Session)
    session.__dict__.update(state)
    return session


def document_from_row(
    stream_id: str,
    version: int,
    *,
    app: str,
    collection: str,
    scope: str,
    owner: str,
    doc_id: str,
    document: dict[str, Any],
    created_at: datetime,
    updated_at: datetime,
) -> Document:
    """The Document as its collection view holds it (the view is kept from its events)."""
    doc = object.__new__(Document)
    doc.__dict__.update(
        _id=UUID(stream_id),
        _version=version,
        _pending_events=[],
        _created_on=created_at,
        _modified_on=updated_at,
        app=app,
        collection=collection,
        scope=scope,
        owner=owner,
        doc_id=doc_id,
        document=document,
        deleted=False,
    )
    return doc
