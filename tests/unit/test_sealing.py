"""The sealed payload format: round trips, wrong keys, and what erased fields read as."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from turnlog.contracts import events as ev
from turnlog.services.app import sealed
from turnlog.services.app.log.codec import EventCodec
from turnlog.services.app.sealed import PERSONAL, SealError

KEY = AESGCM(bytes(range(32)))
OTHER = AESGCM(bytes(32))
PAYLOADS: list[ev.EventPayload] = [
    ev.MessageReceived(message_id="m1", text="my secret — ünïcode 🌍"),
    ev.ReplySent(text="a reply", streamed=True),
    ev.Notified(text="thinking"),
    ev.DataSet(key="notes", value=["buy coffee", {"at": 3}]),
    ev.EffectRecorded(name="llm", result={"text": "model said", "tokens": 7}),
    ev.DocumentInserted(
        app="a", collection="notes", scope="user", owner="alice", doc_id="d1",
        document={"_id": "d1", "body": "private"},
    ),
    ev.DocumentUpdated(
        collection="notes", doc_id="d1", changes={"$set": {"body": "new"}},
        document={"_id": "d1", "body": "new"},
    ),
    ev.SessionStarted(
        app="a", user=ev.UserRef(id="alice", email="alice@example.com", org_id="acme"),
        channel=ev.ChannelRef(),
    ),
]  # fmt: skip
_codec = EventCodec(ev.ALL_PAYLOADS)


def plain_and_sealed(payload: ev.EventPayload, key: AESGCM = KEY) -> tuple[bytes, bytes]:
    plain = _codec.encode(payload)
    return plain, sealed.seal(plain, PERSONAL[payload.TYPE], "alice", 1, key)


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.TYPE)
def test_sealing_then_opening_gives_back_the_exact_bytes(payload: ev.EventPayload) -> None:
    plain, closed = plain_and_sealed(payload)
    assert closed.startswith(b'{"_sealed":{"user":"alice","key":1,"fields":')
    for path in PERSONAL[payload.TYPE]:
        value: Any = payload
        for name in path.split("."):
            value = getattr(value, name)
        assert msgspec.json.encode(value) not in closed
    parsed = sealed.parse(closed)
    assert parsed is not None
    assert sealed.open_(*parsed, KEY) == plain


def test_fields_outside_the_personal_ones_stay_in_clear() -> None:
    _, closed = plain_and_sealed(PAYLOADS[0])
    assert b'"message_id":"m1"' in closed and b'"sender":"user"' in closed
    _, started = plain_and_sealed(PAYLOADS[7])
    assert b'"user":{"id":"alice","email":"' in started and b'"org_id":"acme"}' in started
    assert b"example.com" not in started


def test_a_plain_payload_is_not_taken_for_a_sealed_one() -> None:
    assert sealed.parse(_codec.encode(ev.DataSet(key="k", value="_sealed"))) is None
    assert sealed.parse(b'{"text":"hi"}') is None


def test_the_wrong_key_is_refused() -> None:
    _, closed = plain_and_sealed(PAYLOADS[0])
    parsed = sealed.parse(closed)
    assert parsed is not None
    with pytest.raises(SealError, match="does not open with that key"):
        sealed.open_(*parsed, OTHER)


def test_a_sealed_value_moved_to_another_user_does_not_open() -> None:
    _, closed = plain_and_sealed(PAYLOADS[0])
    moved = closed.replace(b'"user":"alice"', b'"user":"bob"')
    parsed = sealed.parse(moved)
    assert parsed is not None
    with pytest.raises(SealError):
        sealed.open_(*parsed, KEY)


ERASED: list[tuple[int, dict[str, Any]]] = [
    (0, {"text": "[erased]", "message_id": "m1"}),
    (1, {"text": "[erased]", "streamed": True}),
    (2, {"text": "[erased]"}),
    (3, {"value": "[erased]", "key": "notes"}),
    (4, {"result": "[erased]", "name": "llm"}),
    (5, {"document": {"_id": "d1", "_erased": True}, "owner": "alice"}),
    (6, {"changes": {"_erased": True}, "document": {"_id": "d1", "_erased": True}}),
    (7, {"user": {"id": "alice", "email": None, "org_id": "acme"}, "app": "a"}),
]


@pytest.mark.parametrize(("index", "expected"), ERASED, ids=[PAYLOADS[i].TYPE for i, _ in ERASED])
def test_with_the_key_destroyed_each_field_reads_as_its_placeholder(
    index: int, expected: dict[str, Any]
) -> None:
    payload = PAYLOADS[index]
    _, closed = plain_and_sealed(payload)
    parsed = sealed.parse(closed)
    assert parsed is not None
    opened = sealed.open_(*parsed, None)
    decoded = msgspec.json.decode(opened)
    assert "_sealed" not in decoded
    assert {k: decoded[k] for k in expected} == expected
    # still a valid payload of its type
    assert _codec.decode(payload.TYPE, payload.SCHEMA_VERSION, opened).TYPE == payload.TYPE
