"""Domain events and stored payloads stay in step: same fields, lossless round trip."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from uuid import uuid4

import msgspec
import pytest

from turnlog.contracts.events import (
    DOCUMENT_PAYLOADS,
    INTEGRATION_PAYLOADS,
    SCHEDULE_PAYLOADS,
    SESSION_PAYLOADS,
    TASK_PAYLOADS,
    AttachmentRef,
    ChannelRef,
    UserRef,
)
from turnlog.domain.document import Document
from turnlog.domain.session import Session
from turnlog.services.app import mapping
from turnlog.services.app.log.records import RecordedEvent

BASE_FIELDS = {"originator_id", "originator_version", "timestamp", "originator_topic"}


@pytest.mark.parametrize(("domain", "wire"), mapping.PAIRS, ids=lambda p: getattr(p, "TYPE", ""))
def test_domain_event_and_payload_have_the_same_fields(domain: type, wire: type) -> None:
    domain_fields = {f.name for f in dataclasses.fields(domain)} - BASE_FIELDS
    assert domain_fields - set(mapping.RECORD_FIELDS) == set(wire.__struct_fields__)


def test_every_aggregate_payload_is_mapped_once() -> None:
    aggregates = (
        SESSION_PAYLOADS + DOCUMENT_PAYLOADS + TASK_PAYLOADS + SCHEDULE_PAYLOADS
        + INTEGRATION_PAYLOADS
    )  # fmt: skip
    assert sorted(p.TYPE for _, p in mapping.PAIRS) == sorted(p.TYPE for p in aggregates)


def test_document_events_carry_exactly_their_payload_fields() -> None:
    t = datetime(2026, 5, 5, tzinfo=UTC)
    doc = Document.insert(
        uuid4(),
        app="a",
        collection="c",
        scope="user",
        owner="u",
        document={"_id": "d", "n": 1},
        at=t,
    )
    doc.update({"$inc": {"n": 1}}, at=t)
    doc.delete(at=t)
    records = [
        mapping.to_new_event(e, mapping.Metadata(actor="app:a")) for e in doc.collect_events()
    ]
    assert [r.type for r in records] == [
        "document.inserted",
        "document.updated",
        "document.deleted",
    ]
    assert msgspec.json.decode(records[1].payload) == {
        "collection": "c",
        "doc_id": "d",
        "changes": {"$inc": {"n": 1}},
        "document": {"_id": "d", "n": 2},
    }


def test_events_round_trip_through_records() -> None:
    t = datetime(2026, 5, 5, tzinfo=UTC)
    session = Session.start(
        uuid4(), app="a", user=UserRef(id="u", org_id="o"), channel=ChannelRef(), at=t
    )
    session.receive_message(
        message_id="m1", text="hi", at=t, attachments=(AttachmentRef(name="f.csv", size=3),)
    )
    session.set_data("k", {"nested": [1, 2.5, None]}, at=t)
    codec = mapping.session_codec()
    meta = mapping.Metadata(correlation_id="m1", actor="user:u")
    rebuilt = None
    for version, event in enumerate(session.collect_events(), start=1):
        new = mapping.to_new_event(event, meta, codec)
        record = RecordedEvent(
            position=version,
            stream_id=str(session.id),
            version=version,
            type=new.type,
            schema_version=new.schema_version,
            payload=new.payload,
            recorded_at=new.recorded_at,
            correlation_id=new.correlation_id,
            causation_id=None,
            actor=new.actor,
            prev_hash=b"",
            hash=b"",
        )
        back = mapping.to_domain_event(record, session.id, codec)
        assert back == event
        rebuilt = back.mutate(rebuilt)
    assert isinstance(rebuilt, Session)
    assert rebuilt.data == session.data and rebuilt.history == session.history
