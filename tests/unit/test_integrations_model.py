"""A user's integrations folded from their events, the rules of connecting, the sealed
credentials left closed for every reader but the one that asks, and the wire shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from turnlog.contracts import bus
from turnlog.contracts import events as ev
from turnlog.domain.integrations import IntegrationError, UserIntegrations
from turnlog.services.adapters.nats.subjects import Subjects, user_token
from turnlog.services.app import sealed
from turnlog.services.app.log.codec import EventCodec
from turnlog.services.app.sealed import PERSONAL, SECRET, WITHHELD

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
T1 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
TOKEN = "ghp_Sup3rS3cretT0ken"
GOLDEN = Path(__file__).resolve().parents[1] / "golden"
KEY = AESGCM(bytes(range(32)))
_codec = EventCodec(ev.ALL_PAYLOADS)


def replayed(events: list[Any]) -> UserIntegrations:
    """A record of alice's built again from ``events``, as the log loads it."""
    record = UserIntegrations.new("alice")
    for event in events:
        event.mutate(record)
    return record


def test_connecting_records_the_credentials_and_reconnecting_replaces_them() -> None:
    record = UserIntegrations.new("alice")
    record.connect("github", {"token": TOKEN}, ["repo"], T0, "user:alice")
    record.connect("github", {"token": "new"}, [], T1, "user:alice")
    pending = record.collect_events()
    assert pending[0].originator_version == 1
    assert [type(e).__name__ for e in pending] == ["Connected"] * 2
    again = replayed(pending)
    assert again.version == 2
    github = again.connected["github"]
    assert github.credentials == {"token": "new"} and github.connected_by == "user:alice"
    assert github.connected_at == T1


def test_disconnecting_forgets_them_and_an_unconnected_type_records_nothing() -> None:
    connected = UserIntegrations.new("alice")
    connected.connect("github", {"t": 1}, [], T0)
    record = replayed(connected.collect_events())
    assert record.disconnect("gmail", "", T1) is False
    assert record.disconnect("github", "revoked", T1) is True
    pending = record.collect_events()
    assert pending[0].originator_version == 2
    assert [(type(e).__name__, e.user_id, e.type, e.reason) for e in pending] == [
        ("Disconnected", "alice", "github", "revoked")
    ]
    assert record.connected == {} and record.version == 2


@pytest.mark.parametrize("name", ["", " github", "git hub", "a.b", "x" * 65, "-lead", "é"])
def test_a_type_is_a_word(name: str) -> None:
    with pytest.raises(IntegrationError, match="integration type is a word"):
        UserIntegrations.new("alice").connect(name, {"token": "t"}, [], T0)


@pytest.mark.parametrize(
    ("credentials", "match"),
    [
        ({}, "non-empty JSON object"),
        ("a token", "non-empty JSON object"),
        ({"token": {TOKEN}}, "not JSON-encodable"),
        ({"token": "x" * 70_000}, "limit is 65536"),
    ],
)
def test_credentials_are_a_small_json_object_and_errors_never_show_them(
    credentials: Any, match: str
) -> None:
    with pytest.raises(IntegrationError, match=match) as raised:
        UserIntegrations.new("alice").connect("github", credentials, [], T0)
    assert TOKEN not in str(raised.value) and "xxxx" not in str(raised.value)


def test_scopes_are_names() -> None:
    with pytest.raises(IntegrationError, match="scopes must be a list"):
        UserIntegrations.new("alice").connect("github", {"t": 1}, "repo", T0)
    with pytest.raises(IntegrationError, match="scope"):
        UserIntegrations.new("alice").connect("github", {"t": 1}, [""], T0)


def test_credentials_are_sealed_and_opened_only_when_asked_for() -> None:
    payload = ev.IntegrationConnected(
        user_id="alice", type="github", credentials={"token": TOKEN}, scopes=("repo",)
    )
    plain = _codec.encode(payload)
    assert PERSONAL["integration.connected"] == SECRET["integration.connected"] == ("credentials",)
    closed = sealed.seal(plain, PERSONAL[payload.TYPE], "alice", 1, KEY)
    assert TOKEN.encode() not in closed and b'"type":"github"' in closed
    parsed = sealed.parse(closed)
    assert parsed is not None
    assert sealed.open_(*parsed, KEY) == plain
    withheld = msgspec.json.decode(sealed.open_(*parsed, KEY, ("credentials",)))
    assert withheld["credentials"] == WITHHELD and "_sealed" not in withheld
    erased = msgspec.json.decode(sealed.open_(*parsed, None, ("credentials",)))
    assert erased["credentials"] == {"_erased": True}
    for opened in (withheld, erased):  # still a valid payload of its type
        _codec.decode(payload.TYPE, 1, msgspec.json.encode(opened))


def test_notice_subjects_hold_any_user_id_as_one_token() -> None:
    subjects = Subjects("tl")
    assert subjects.integrations("alice") == "tl.integrations.alice"
    tokens = {user_token(u) for u in ("a.b@example.com", "a b", "~x", "", "a>*", "alice")}
    assert len(tokens) == 6
    assert all(t and not any(c in t for c in " .*>") for t in tokens)


GOLDEN_CASES: list[tuple[str, Any, type]] = [
    ("integration_connect.json", bus.IntegrationCommand, bus.ConnectIntegration),
    ("integration_disconnect.json", bus.IntegrationCommand, bus.DisconnectIntegration),
    ("integration_answer.json", bus.IntegrationAnswer, bus.IntegrationAnswer),
    ("integration_changed.json", bus.IntegrationChanged, bus.IntegrationChanged),
    ("integration_connected.json", ev.IntegrationConnected, ev.IntegrationConnected),
    ("integration_disconnected.json", ev.IntegrationDisconnected, ev.IntegrationDisconnected),
]


@pytest.mark.parametrize(
    ("name", "wire_type", "expected"), GOLDEN_CASES, ids=[c[0] for c in GOLDEN_CASES]
)
def test_golden_files_decode_and_reencode_byte_for_byte(
    name: str, wire_type: Any, expected: type
) -> None:
    raw = (GOLDEN / name).read_bytes()
    value = msgspec.json.decode(raw, type=wire_type)
    assert type(value) is expected
    assert msgspec.json.encode(value) == raw


def test_commands_refuse_unknown_fields() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field `token`"):
        msgspec.json.decode(
            b'{"kind":"connect","user_id":"u","type":"github","credentials":{},"token":"x"}',
            type=bus.IntegrationCommand,
        )
