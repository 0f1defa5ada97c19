"""A schedule's record and cron ticks, without I/O: which decisions a tick allows, what
they record, and how the record is built again from its events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from turnlog.contracts import events as ev
from turnlog.domain.schedule import (
    NoRunInProgress,
    RunInProgress,
    ScheduleError,
    ScheduleRecord,
    TickTaken,
)
from turnlog.services.app.mapping import CODEC, Metadata, to_new_event
from turnlog.services.sdk.scheduled import NoReplyTarget, ScheduledSession
from turnlog.services.sdk.schedules import Cron, Schedule, ScheduleDeclarationError
from turnlog.services.sdk.types import Block, UserInfo

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
T1, T2, T3 = (T0 + timedelta(hours=n) for n in (1, 2, 3))
NOW = T0 + timedelta(minutes=1)


def collect(record: ScheduleRecord) -> tuple[int, list[ev.EventPayload]]:
    """The version ``record``'s pending events follow, and their payloads as stored."""
    pending = record.collect_events()
    stored = [to_new_event(e, Metadata()) for e in pending]
    payloads = [CODEC.decode(n.type, n.schema_version, n.payload) for n in stored]
    return (pending[0].originator_version - 1 if pending else record.version), payloads


def test_a_fired_tick_is_taken_and_its_run_open_until_completed() -> None:
    record = ScheduleRecord.new("notes", "digest")
    record.fire(T0, "w1", at=NOW)
    assert record.has(T0) and not record.has(T1)
    assert record.running is not None and record.running.worker == "w1"
    record.complete("ok", 12.5, at=NOW)
    assert record.running is None
    expected, pending = collect(record)
    assert expected == 0 and record.version == 2
    assert pending == [
        ev.ScheduleFired(app="notes", schedule="digest", tick=T0, worker="w1"),
        ev.ScheduleCompleted(tick=T0, outcome="ok", duration_ms=12.5),
    ]
    assert collect(record) == (2, [])


def test_a_tick_not_after_the_last_one_is_refused() -> None:
    record = ScheduleRecord.new("notes", "digest")
    record.fire(T1, "w1", at=NOW)
    record.complete("ok", 1.0, at=NOW)
    with pytest.raises(TickTaken):
        record.fire(T1, "w2", at=NOW)
    with pytest.raises(TickTaken):
        record.fire(T0, "w2", at=NOW)


def test_a_tick_during_a_run_can_only_be_skipped_as_overlap() -> None:
    record = ScheduleRecord.new("notes", "digest")
    record.fire(T0, "w1", at=NOW)
    with pytest.raises(RunInProgress):
        record.fire(T1, "w2", at=NOW)
    record.skip(T1, "w2", at=NOW)
    assert record.has(T1) and record.running is not None and record.running.tick == T0
    record.complete("failed", 5.0, "ValueError", "boom", at=NOW)
    _, pending = collect(record)
    assert pending[1] == ev.ScheduleSkipped(tick=T1, reason="overlap", running_tick=T0, worker="w2")
    assert pending[2].error_type == "ValueError"  # type: ignore[attr-defined]


def test_skipping_completing_or_interrupting_needs_an_open_run() -> None:
    record = ScheduleRecord.new("notes", "digest")
    for command in (
        lambda: record.skip(T0, "w1", at=NOW),
        lambda: record.complete("ok", 1.0, at=NOW),
        lambda: record.interrupt("gone", at=NOW),
    ):
        with pytest.raises(NoRunInProgress):
            command()
    record.fire(T0, "w1", at=NOW)
    with pytest.raises(ScheduleError, match="outcome must be one of"):
        record.complete("meh", 1.0, at=NOW)


def test_a_run_cut_off_is_interrupted_then_the_next_tick_fires() -> None:
    record = ScheduleRecord.new("notes", "digest")
    record.fire(T0, "dead", at=NOW)
    collect(record)
    record.interrupt("its worker stopped", at=NOW)
    record.fire(T1, "w2", at=NOW)
    expected, pending = collect(record)
    assert expected == 1
    assert pending[0] == ev.ScheduleInterrupted(tick=T0, worker="dead", reason="its worker stopped")


def test_the_record_folds_back_from_its_events() -> None:
    record = ScheduleRecord.new("notes", "digest")
    record.fire(T0, "w1", at=NOW)
    record.skip(T1, "w2", at=NOW)
    record.complete("ok", 3.0, at=NOW)
    record.fire(T2, "w2", at=NOW)
    folded = ScheduleRecord.new("notes", "digest")
    for event in record.collect_events():
        event.mutate(folded)
    assert (folded.version, folded.last_tick, folded.running) == (
        record.version,
        record.last_tick,
        record.running,
    )
    assert not folded.has(T3)


def test_every_schedule_payload_is_folded() -> None:
    types = {p.TYPE for p in ev.SCHEDULE_PAYLOADS}
    assert types == {
        "schedule.fired",
        "schedule.completed",
        "schedule.skipped",
        "schedule.interrupted",
    }
    assert set(ev.SCHEDULE_PAYLOADS) <= set(ev.ALL_PAYLOADS)


def test_cron_ticks_five_fields_seconds_and_time_zones() -> None:
    hourly = Cron("0 * * * *")
    assert hourly.next_after(T0) == T1  # strictly after
    assert hourly.latest_at_or_before(T0) == T0
    assert hourly.latest_at_or_before(T0 + timedelta(minutes=59)) == T0
    every_two = Cron("* * * * * */2")
    assert every_two.next_after(T0 + timedelta(milliseconds=500)) == T0 + timedelta(seconds=2)
    paris = Cron("30 8 * * MON-FRI", tz="Europe/Paris")
    assert paris.next_after(T0) == datetime(2026, 3, 3, 7, 30, tzinfo=UTC)  # UTC+1 in March
    assert Cron("@daily").next_after(T0) == datetime(2026, 3, 3, tzinfo=UTC)


@pytest.mark.parametrize(
    "cron", ["", "* * * *", "* * * * * * *", "61 * * * *", "0 0 31 2 *", "* * * * BLAH"]
)
def test_a_wrong_cron_expression_is_refused(cron: str) -> None:
    with pytest.raises(ScheduleDeclarationError):
        Cron(cron)


def test_the_owner_of_a_schedule() -> None:
    cron = Cron("@hourly")
    assert Schedule("notes", "s", cron, print).owner == UserInfo(id="app:notes")
    org = Schedule("notes", "s", cron, print, owner="org:acme").owner
    assert (org.id, org.org_id, org.owner_id) == ("org:acme", "acme", "org:acme")
    assert Schedule("notes", "s", cron, print, owner="u1").owner.owner_id == "u1"
    assert Schedule("notes", "s", cron, print).stream_id == "schedule:notes:s"
    with pytest.raises(ScheduleDeclarationError):
        Schedule("notes", "s", cron, print, owner="")


def test_a_scheduled_session_has_an_identity_and_no_one_to_reply_to() -> None:
    session = ScheduledSession(
        stream_id="schedule:notes:digest",
        schedule="digest",
        tick=T0,
        user=UserInfo(id="org:acme", org_id="acme"),
        meta=Metadata(actor="app:notes"),
    )
    assert session.history == [] and session.data == {} and dict(session.integrations) == {}
    assert session._owner("owner", "c") == "org:acme"
    assert session._owner("session", "c") == "schedule:notes:digest"
    for call in (
        lambda: session.reply("hi"),
        lambda: session.notify("hi"),
        lambda: session.stream_reply(),
        lambda: session.show(Block("card")),
        lambda: session.show_task("t1"),
    ):
        with pytest.raises(NoReplyTarget, match="a scheduled run has no one to reply to"):
            call()
