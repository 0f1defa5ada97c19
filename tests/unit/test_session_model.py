"""The Session aggregate: given recorded events, when a command runs, then these events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from turnlog.contracts.events import ChannelRef, UserRef
from turnlog.domain import errors
from turnlog.domain.session import HISTORY_LIMIT, Session

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def history_of(*steps: Any) -> list[Any]:
    """Events recorded by running ``steps`` (callables on a session) on a new session."""
    session = Session.start(
        uuid4(), app="notes", user=UserRef(id="u1"), channel=ChannelRef(), at=T0
    )
    for step in steps:
        step(session)
    return list(session.collect_events())


def given(events: list[Any]) -> Session:
    """A session rebuilt from recorded events alone, with nothing pending."""
    session = None
    for event in events:
        session = event.mutate(session)
    assert isinstance(session, Session)
    return session


def then(session: Session) -> list[tuple[str, dict[str, Any]]]:
    return [
        (type(e).__name__, {k: v for k, v in vars(e).items() if not k.startswith("originator")})
        for e in session.collect_events()
    ]


def message(mid: str = "m1", text: str = "hi") -> Any:
    return lambda s: s.receive_message(message_id=mid, text=text, at=at(1))


def completed(s: Session) -> None:
    s.complete_turn(outcome="ok", duration_ms=3, at=at(2))


def test_start_records_app_user_and_channel() -> None:
    events = history_of()
    assert [type(e).__name__ for e in events] == ["Started"]
    assert events[0].app == "notes" and events[0].user == UserRef(id="u1")
    assert events[0].timestamp == T0


def test_message_opens_a_turn_and_completion_closes_it() -> None:
    session = given(history_of())
    session.receive_message(message_id="m1", text="remember milk", at=at(1))
    session.reply("noted", at=at(1.5))
    session.complete_turn(outcome="ok", duration_ms=12.5, at=at(2))
    recorded = then(session)
    assert [name for name, _ in recorded] == ["MessageReceived", "ReplySent", "TurnCompleted"]
    assert recorded[0][1]["text"] == "remember milk"
    assert recorded[2][1]["message_id"] == "m1" and recorded[2][1]["timestamp"] == at(2)
    assert session.open_turn is None


def test_a_second_message_during_an_open_turn_is_refused() -> None:
    session = given(history_of(message("m1")))
    with pytest.raises(errors.TurnInProgress) as caught:
        session.receive_message(message_id="m2", text="again", at=at(3))
    assert caught.value.message_id == "m1"
    assert then(session) == []


def test_failed_turn_records_error_type_and_message() -> None:
    session = given(history_of(message()))
    session.complete_turn(
        outcome="failed", duration_ms=1, at=at(2), error_type="KeyError", error_message="'x'"
    )
    ((name, fields),) = then(session)
    assert name == "TurnCompleted"
    assert fields["outcome"] == "failed" and fields["error_type"] == "KeyError"


def test_completing_without_an_open_turn_is_refused() -> None:
    session = given(history_of(message(), completed))
    with pytest.raises(errors.NoTurnInProgress):
        session.complete_turn(outcome="ok", duration_ms=1, at=at(3))


def test_interrupted_turn_closes_the_open_turn() -> None:
    session = given(history_of(message("m9")))
    session.interrupt_turn("process stopped", at=at(5))
    ((name, fields),) = then(session)
    assert name == "TurnInterrupted" and fields["message_id"] == "m9"
    assert session.open_turn is None


def test_nothing_is_recorded_after_the_session_ended() -> None:
    session = given(history_of(lambda s: s.end("closed", at=at(1))))
    for command in (
        lambda: session.reply("late", at=at(2)),
        lambda: session.notify("late", at=at(2)),
        lambda: session.set_data("k", 1, at=at(2)),
        lambda: session.receive_message(message_id="m", text="x", at=at(2)),
        lambda: session.end("closed", at=at(2)),
    ):
        with pytest.raises(errors.SessionClosed):
            command()
    assert then(session) == []


def test_ending_during_an_open_turn_is_refused() -> None:
    session = given(history_of(message()))
    with pytest.raises(errors.TurnInProgress):
        session.end("closed", at=at(2))


def test_data_set_and_deleted_per_key() -> None:
    session = given(history_of(lambda s: s.set_data("notes", ["a"], at=at(1))))
    assert session.data == {"notes": ["a"]}
    session.set_data("notes", ["a", "b"], at=at(2))
    session.delete_data("notes", at=at(3))
    assert then(session) == [
        ("DataSet", {"key": "notes", "value": ["a", "b"], "timestamp": at(2)}),
        ("DataDeleted", {"key": "notes", "timestamp": at(3)}),
    ]
    assert session.data == {}


def test_tuples_in_data_are_stored_as_lists() -> None:
    session = given(history_of())
    session.set_data("pair", (1, (2, 3)), at=at(1))
    assert then(session)[0][1]["value"] == [1, [2, 3]]


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({1, 2}, "session.data['k']"),
        ({"when": datetime.now(UTC)}, "session.data['k']['when']"),
        ([1, float("nan")], "session.data['k'][1]"),
        ({1: "int key"}, "session.data['k'] key 1"),
        (object(), "session.data['k']"),
    ],
)
def test_data_values_must_be_plain_json(value: Any, path: str) -> None:
    session = given(history_of())
    with pytest.raises(errors.NotJSONEncodable) as caught:
        session.set_data("k", value, at=at(1))
    assert caught.value.path == path
    assert then(session) == []


def test_deleting_a_missing_key_is_refused() -> None:
    session = given(history_of())
    with pytest.raises(errors.UnknownDataKey):
        session.delete_data("nope", at=at(1))


def test_text_and_payload_sizes_are_bounded() -> None:
    session = given(history_of(message()))
    with pytest.raises(errors.TooLarge) as caught:
        session.reply("x" * (256 * 1024 + 1), at=at(2))
    assert caught.value.limit == 256 * 1024
    with pytest.raises(errors.TooLarge):
        session.set_data("blob", "y" * (1024 * 1024), at=at(2))
    with pytest.raises(errors.TooLarge):
        session.show_block("b1", "card", {"body": "z" * (1024 * 1024)}, at=at(2))
    assert then(session) == []


def test_empty_names_are_refused() -> None:
    session = given(history_of())
    with pytest.raises(errors.InvalidValue):
        session.set_data("", 1, at=at(1))
    with pytest.raises(errors.InvalidValue):
        session.show_block("", "card", {}, at=at(1))


def test_same_block_id_again_updates_the_block() -> None:
    session = given(
        history_of(lambda s: s.show_block("t1", "task", {"status": "running"}, at=at(1)))
    )
    session.show_block("t1", "task", {"status": "done"}, at=at(2))
    assert session.blocks == {"t1": {"type": "task", "payload": {"status": "done"}}}


def test_history_excludes_the_current_message_and_is_bounded() -> None:
    steps: list[Any] = []
    for i in range(60):
        steps += [message(f"m{i}", f"q{i}"), completed]
    session = given(history_of(*steps, message("last", "current")))
    recent = session.recent_messages()
    assert len(recent) == HISTORY_LIMIT
    assert recent[-1]["text"] == "q59" and recent[0]["text"] == "q10"
    assert all(m["sender"] == "user" for m in recent)


def test_replies_enter_history_as_app_messages() -> None:
    session = given(
        history_of(message("m1", "hello"), lambda s: s.reply("hi there", at=at(1)), completed)
    )
    assert [(m["sender"], m["text"]) for m in session.recent_messages()] == [
        ("user", "hello"),
        ("app", "hi there"),
    ]
    assert session.message_count == 1


def test_rejected_input_is_recorded_with_its_reason() -> None:
    session = given(history_of())
    session.reject_input("m7", "schema_violation", "missing field `text`", at=at(1))
    assert then(session) == [
        (
            "InputRejected",
            {
                "message_id": "m7",
                "reason": "schema_violation",
                "detail": "missing field `text`",
                "timestamp": at(1),
            },
        )
    ]


def test_effects_are_recorded_with_json_results() -> None:
    session = given(history_of(message()))
    session.record_effect("llm", {"text": "answer"}, at=at(2))
    assert then(session) == [
        ("EffectRecorded", {"name": "llm", "result": {"text": "answer"}, "timestamp": at(2)})
    ]
