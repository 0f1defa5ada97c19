"""The text policy: what the model stores, what it refuses with a clear reason, and how
the entries (bus, HTTP, queries) apply it. Property-based where the input space is wide."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnlog.contracts import bus
from turnlog.contracts.events import ChannelRef, UserRef
from turnlog.domain import values
from turnlog.domain.errors import (
    DomainError,
    InvalidText,
    InvalidUser,
    NotJSONEncodable,
    TooDeep,
    TooLarge,
)
from turnlog.domain.session import Session
from turnlog.services.adapters.http.textpolicy import head_problem
from turnlog.services.adapters.nats.ingress import Rejected, decode
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.adapters.postgres.projector.writes import storable_payload
from turnlog.services.app.text import body_problem

ODD = [
    "\u202eright-to-left\u202c",  # RTL override
    "\ufeffwith a BOM",
    "e\u0301\u0301\u0301 combining",
    "\uffff\ufffe noncharacters",
    "tab\tnewline\ncontrol\x01\x7f",
    "😀 astral",
    "",
]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def new_session() -> Session:
    return Session.start(
        uuid.uuid4(), app="notes", user=UserRef(id="u1"), channel=ChannelRef(), at=T0
    )


UNSTORABLE = ["\x00", "a\x00b", "\ud800", "x\udfffy", "\udbff\udc00"]  # the last: two lone halves


@pytest.mark.parametrize("text", ODD)
def test_odd_unicode_is_stored_as_given(text: str) -> None:
    assert values.storable(text, "t") == text
    assert values.json_value({text: [text]}, "v") == {text: [text]}


@pytest.mark.parametrize("text", UNSTORABLE)
def test_nul_and_lone_surrogates_are_refused_naming_where(text: str) -> None:
    with pytest.raises(InvalidText) as refused:
        values.bounded_text(text, "reply text")
    assert refused.value.code == "invalid_text"
    assert str(refused.value).startswith("reply text holds ")
    assert text not in str(refused.value)  # the message names where, never the text


@given(st.text())
def test_a_text_is_storable_exactly_when_it_encodes_as_utf8_without_nul(text: str) -> None:
    try:
        text.encode("utf-8")
        expected = "\x00" not in text
    except UnicodeEncodeError:
        expected = False
    assert (values.unstorable_at(text) is None) is expected
    cleaned = values.clean(text)
    assert values.unstorable_at(cleaned) is None
    assert len(cleaned) == len(text)


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_json_values_nest_at_most_max_depth_levels() -> None:
    assert values.json_value(_nested(values.MAX_DEPTH), "v") == _nested(values.MAX_DEPTH)
    with pytest.raises(TooDeep) as deep:
        values.json_value(_nested(values.MAX_DEPTH + 1), "session.data['x']")
    assert deep.value.code == "too_deep"
    # far deeper than Python's recursion limit: refused, never a RecursionError
    with pytest.raises(TooDeep):
        values.json_value(_nested(100_000), "v")


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_numbers_that_json_cannot_hold_are_refused(number: float) -> None:
    with pytest.raises(NotJSONEncodable):
        values.json_value({"n": number}, "v")


def test_very_long_keys_and_texts_are_bounded() -> None:
    with pytest.raises(TooLarge):
        values.name("k" * (values.MAX_NAME_CHARS + 1), "session.data key")
    with pytest.raises(TooLarge):
        values.bounded_json({"k" * values.MAX_VALUE_BYTES: 1}, "v")
    assert values.name("k" * values.MAX_NAME_CHARS, "key")


@pytest.mark.parametrize("user_id", ["org:acme", "app:notes", "org:", "app:"])
def test_user_ids_from_outside_cannot_take_a_reserved_prefix(user_id: str) -> None:
    with pytest.raises(InvalidUser) as refused:
        values.user_id(user_id)
    assert refused.value.code == "invalid_user"


@pytest.mark.parametrize("user_id", ["alice", "org-acme", "organisation:x", "auth0|123", "a:b"])
def test_other_user_ids_are_fine(user_id: str) -> None:
    assert values.user_id(user_id) == user_id


def test_the_session_model_refuses_unstorable_text_at_every_field() -> None:
    session = new_session()
    session.receive_message(message_id="m1", text="hi", at=T0)
    calls = [
        lambda: session.reply("a\x00", at=T0),
        lambda: session.notify("\ud800", at=T0),
        lambda: session.set_data("k\x00", 1, at=T0),
        lambda: session.set_data("k", {"nested": ["\x00"]}, at=T0),
        lambda: session.set_data("k", {"\x00": 1}, at=T0),
        lambda: session.show_block("b", "card", {"title": "\ud800"}, at=T0),
        lambda: session.record_effect("e", ["\x00"], at=T0),
    ]
    for call in calls:
        with pytest.raises(InvalidText):
            call()
    for user in (
        UserRef(id="a\x00"),
        UserRef(id="u", email="\x00"),
        UserRef(id="u", org_id="\x00"),
    ):
        with pytest.raises(InvalidText):
            Session.start(uuid.uuid4(), app="a", user=user, channel=ChannelRef(), at=T0)


def test_texts_turnlog_records_from_errors_are_cleaned_not_refused() -> None:
    session = new_session()
    session.receive_message(message_id="m1", text="hi", at=T0)
    session.complete_turn(
        outcome="failed", duration_ms=1, at=T0, error_type="E\x00", error_message="bad \x00 \ud800"
    )
    event = session.collect_events()[-1]
    assert event.error_message == "bad \ufffd \ufffd"  # type: ignore[attr-defined]
    assert event.error_type == "E\ufffd"  # type: ignore[attr-defined]


# -- the bus ingress ---------------------------------------------------------------------

SUBJECTS = Subjects("t")
SUBJECT = "t.in.notes.new"


def _message(**overrides: Any) -> bytes:
    body: dict[str, Any] = {
        "kind": "message",
        "message_id": "m1",
        "user": {"id": "u1"},
        "text": "hello",
    }
    body.update(overrides)
    return msgspec.json.encode(body)


def _reason(data: bytes) -> str:
    with pytest.raises(Rejected) as rejected:
        decode(SUBJECT, data, SUBJECTS, "notes", 1 << 20)
    return rejected.value.reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_message(text="a\x00b"), "invalid_text"),
        (_message(user={"id": "u1", "email": "\x00"}), "invalid_text"),
        (_message(message_id="m\x00"), "invalid_text"),
        (_message(channel={"type": "chat", "name": "\x00"}), "invalid_text"),
        (_message(attachments=[{"name": "\x00.txt"}]), "invalid_text"),
        (b'{"kind":"message","message_id":"m","user":{"id":"u"},"text":"\\ud800"}', "invalid_text"),
        (b'{"kind":"message","message_id":"m","user":{"id":"u"},"text":"\xff"}', "invalid_text"),
        (_message(user={"id": "org:acme"}), "invalid_user"),
        (_message(user={"id": "app:notes"}), "invalid_user"),
        (b'{"kind":"message","message_id":"m","user":{"id":"u"},"text":1e309}', "schema_violation"),
        (b'{"kind":"message","message_id":"m","user":{"id":"u"},"text":NaN}', "undecodable"),
    ],
)
def test_the_ingress_dead_letters_what_the_policy_refuses(data: bytes, reason: str) -> None:
    assert _reason(data) == reason


def test_set_vars_values_are_held_to_the_policy() -> None:
    sid = str(uuid.uuid4())
    base = {"kind": "set_vars", "message_id": "m1", "session_id": sid}
    deep = _nested(values.MAX_DEPTH + 5)

    def reason(variables: Any) -> str:
        with pytest.raises(Rejected) as rejected:
            decode(f"t.in.notes.{sid}", msgspec.json.encode(base | {"variables": variables}),
                   SUBJECTS, "notes", 1 << 20)  # fmt: skip
        return rejected.value.reason

    assert reason({"k": "\x00"}) == "invalid_text"
    assert reason({"\x00": 1}) == "invalid_text"
    assert reason({"k": deep}) == "too_deep"
    sid_subject = f"t.in.notes.{sid}"
    very_deep = msgspec.json.encode(base)[:-1] + b',"variables":{"k":' + b"[" * 100_000
    very_deep += b"]" * 100_000 + b"}}"
    with pytest.raises(Rejected) as rejected:
        decode(sid_subject, very_deep, SUBJECTS, "notes", 1 << 30)
    assert rejected.value.reason == "too_deep"
    ok = decode(f"t.in.notes.{sid}", msgspec.json.encode(base | {"variables": {"k": ODD}}),
                SUBJECTS, "notes", 1 << 20)  # fmt: skip
    assert isinstance(ok, bus.SetSessionVars)


@settings(max_examples=300)
@given(st.text(), st.text(min_size=1, max_size=50))
def test_any_inbound_text_is_decoded_or_dead_lettered_never_raised(text: str, user: str) -> None:
    try:
        data = _message(text=text, user={"id": user})
    except UnicodeEncodeError:
        data = _message(text=text.encode("utf-8", "replace").decode(), user={"id": "u"})
    try:
        message = decode(SUBJECT, data, SUBJECTS, "notes", 1 << 20)
    except Rejected as rejected:
        assert rejected.reason in ("invalid_text", "invalid_user")
        return
    assert isinstance(message, bus.InboundMessage)
    assert values.unstorable_at(message.text) is None
    assert values.unstorable_at(message.user.id) is None


# -- HTTP and NATS queries -----------------------------------------------------------------


def _scope(path: bytes = b"/v1/sessions", query: bytes = b"", **headers: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "raw_path": path,
        "query_string": query,
        "headers": [(k.replace("_", "-").encode(), v) for k, v in headers.items()],
    }


@pytest.mark.parametrize(
    ("scope", "code"),
    [
        (_scope(query=b"user=a%00b"), "invalid_text"),
        (_scope(query=b"user=%ff"), "invalid_text"),
        (_scope(query=b"user=%ed%a0%80"), "invalid_text"),  # an encoded lone surrogate
        (_scope(query=b"a%00=1"), "invalid_text"),
        (_scope(path=b"/v1/sessions/a%00b"), "invalid_text"),
        (_scope(path=b"/data/%c3"), "invalid_text"),
        (_scope(x_turnlog_user=b"u\x00"), "invalid_text"),
    ],
)
def test_http_heads_that_break_the_policy_are_refused(scope: dict[str, Any], code: str) -> None:
    problem = head_problem(scope)
    assert problem is not None and problem[0] == code


def test_http_heads_with_odd_but_storable_text_pass() -> None:
    odd = "%E2%80%AE%EF%BB%BF%F0%9F%98%80+plus"
    assert head_problem(_scope(query=f"user={odd}&x=&y".encode())) is None
    assert head_problem(_scope(path=b"/data/caf%C3%A9")) is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"filter": {"a": "\\u0000"}}', "invalid_text"),
        (b'{"\\u0000": 1}', "invalid_text"),
        (b'{"a": "\\udc00"}', "invalid_text"),
        (b'{"a": "\xff"}', "invalid_text"),
        (b"[" * 70 + b"]" * 70, "too_deep"),
        (b"[" * 100_000 + b"]" * 100_000, "too_deep"),
    ],
)
def test_json_bodies_that_break_the_policy_are_refused(body: bytes, code: str) -> None:
    problem = body_problem(body)
    assert problem is not None and problem[0] == code


def test_bodies_that_are_not_json_are_left_to_the_route() -> None:
    assert body_problem(b"not json") is None
    assert body_problem(b'{"ok": "\\u202e"}') is None


# -- what projections see of events recorded before the policy ---------------------------


@given(st.text(alphabet=st.sampled_from(["\x00", "\\", "u", "0", "a", '"', "\ufeff"])))
def test_projections_see_nul_in_old_payloads_as_the_replacement_character(text: str) -> None:
    payload = msgspec.json.encode({"text": text, "nested": [{"k\x00": text}]})
    seen = msgspec.json.decode(storable_payload(payload))
    want = text.replace("\x00", "\ufffd")
    assert seen == {"text": want, "nested": [{"k\ufffd": want}]}


def test_domain_errors_from_the_policy_carry_codes() -> None:
    for error in (InvalidText("t", 0, "\x00"), TooDeep("p", 1), InvalidUser("u")):
        assert isinstance(error, DomainError) and error.code
