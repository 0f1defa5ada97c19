"""The Task aggregate and its wire forms, without I/O: what each command records, the
rules it keeps, how the record folds back from its stored events, and the task
declarations an app can make."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import msgspec
import pytest

import turnlog
from turnlog.contracts import events as ev
from turnlog.contracts.tasks import TaskCancelNotice, TaskQueued
from turnlog.domain.errors import InvalidValue, NotJSONEncodable
from turnlog.domain.task import Task, TaskFinished, TaskNotRunning, TaskRunning
from turnlog.projections.base import Event, Exec
from turnlog.projections.tasks import Tasks
from turnlog.services.app import mapping, sealed
from turnlog.services.app.log.records import RecordedEvent
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.tasks import log as task_log
from turnlog.services.app.tasks.run import card_fields

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
T0 = datetime(2026, 5, 5, 9, 0, tzinfo=UTC)
BASE_FIELDS = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def submitted(retries: int = 0, **kwargs: Any) -> Task:
    return Task.submit(
        uuid4(),
        app="reports",
        name="build_report",
        kwargs=kwargs or {"report_id": "daily"},
        at=T0,
        session_id="s1",
        user=ev.UserRef(id="alice", email="alice@example.com"),
        retries=retries,
        timeout=30,
    )


def types(task: Task) -> list[str]:
    return [mapping.to_new_event(e, Metadata()).type for e in task.collect_events()]


def test_a_task_runs_one_attempt_from_submitted_to_completed() -> None:
    task = submitted()
    assert (task.status, task.attempts) == ("submitted", 0)
    task.start("w1", at=T0)
    task.report_progress(0.25, "reading", at=T0)
    assert (task.status, task.attempts, task.worker, task.progress) == ("running", 1, "w1", 0.25)
    task.complete({"rows": 3}, at=T0)
    assert task.finished and task.result == {"rows": 3} and task.worker is None
    assert types(task) == [
        "task.submitted", "task.started", "task.progressed", "task.completed"
    ]  # fmt: skip


def test_failures_are_retried_while_attempts_remain() -> None:
    task = submitted(retries=2)
    outcomes = []
    for _ in range(3):
        task.start("w1", at=T0)
        task.fail("RuntimeError", "boom", at=T0)
        outcomes.append((task.status, task.attempts))
    assert outcomes == [("retrying", 1), ("retrying", 2), ("failed", 3)]
    failed = [e for e in task.collect_events() if isinstance(e, Task.Failed)]
    assert [(e.attempt, e.will_retry) for e in failed] == [(1, True), (2, True), (3, False)]
    with pytest.raises(TaskFinished):
        task.start("w1", at=T0)


def test_progress_and_outcomes_need_a_running_attempt() -> None:
    task = submitted()
    with pytest.raises(TaskNotRunning):
        task.report_progress(0.5, at=T0)
    with pytest.raises(TaskNotRunning):
        task.complete(None, at=T0)
    task.start("w1", at=T0)
    with pytest.raises(TaskRunning):
        task.start("w2", at=T0)
    with pytest.raises(InvalidValue):
        task.report_progress(1.5, at=T0)
    with pytest.raises(NotJSONEncodable):
        task.complete({"at": T0}, at=T0)  # refused before anything is recorded
    assert task.status == "running"


def test_a_cancelled_task_records_nothing_more() -> None:
    task = submitted()
    task.start("w1", at=T0)
    task.cancel("no longer needed", at=T0)
    assert task.finished and task.cancel_reason == "no longer needed"
    for command in (
        lambda: task.complete(1, at=T0),
        lambda: task.fail("E", "late", at=T0),
        lambda: task.cancel("again", at=T0),
    ):
        with pytest.raises(TaskFinished):
            command()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kwargs": {"when": T0}}, "not JSON-encodable"),
        ({"retries": -1}, "retries must be from 0"),
        ({"retries": True}, "retries must be an int"),
        ({"timeout": float("nan")}, "timeout must be"),
        ({"name": ""}, "task name"),
    ],
)
def test_submissions_are_checked(changes: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"app": "a", "name": "t", "kwargs": {}, "at": T0}
    with pytest.raises((InvalidValue, NotJSONEncodable), match=message):
        Task.submit(uuid4(), **(arguments | changes))


@pytest.mark.parametrize(
    ("domain", "wire"),
    [(d, w) for d, w in mapping.PAIRS if w in ev.TASK_PAYLOADS],
    ids=lambda p: getattr(p, "TYPE", ""),
)
def test_domain_event_and_payload_have_the_same_fields(domain: type, wire: type) -> None:
    assert {f.name for f in dataclasses.fields(domain)} - BASE_FIELDS == set(wire.__struct_fields__)
    assert wire in ev.TASK_PAYLOADS and wire in ev.ALL_PAYLOADS


def test_the_record_folds_back_from_its_stored_events() -> None:
    task = submitted(retries=1, report_id="daily")
    task.start("w1", at=T0)
    task.fail("ValueError", "bad", at=T0 + timedelta(seconds=1))
    task.start("w2", at=T0 + timedelta(seconds=2))
    task.report_progress(None, "almost", at=T0 + timedelta(seconds=3))
    task.complete([1, 2], at=T0 + timedelta(seconds=4))
    back = None
    for version, event in enumerate(task.collect_events(), start=1):
        new = mapping.to_new_event(event, Metadata(correlation_id="m1"))
        record = RecordedEvent(
            position=version, stream_id=f"task:{task.task_id}", version=version, type=new.type,
            schema_version=1, payload=new.payload, recorded_at=new.recorded_at,
            correlation_id="m1", causation_id=None, actor=None, prev_hash=b"", hash=b"",
        )  # fmt: skip
        back = mapping.to_domain_event(record, UUID(task.task_id)).mutate(back)
    assert isinstance(back, Task)
    assert vars(back) == vars(task)
    status = task_log.status_of(back)
    assert (status.status, status.attempts, status.result, status.error_type) == (
        "completed", 2, [1, 2], None
    )  # fmt: skip
    assert status.updated_at == T0 + timedelta(seconds=4)


def test_the_card_shows_the_status_and_the_last_error_or_the_result() -> None:
    task = submitted(retries=1)
    task.start("w1", at=T0)
    task.fail("ValueError", "bad", at=T0)
    assert card_fields(task) == {
        "status": "retrying", "attempt": 1, "progress": None, "progress_message": "",
        "result": None, "error": {"type": "ValueError", "message": "bad"},
    }  # fmt: skip
    task.start("w1", at=T0)
    task.complete("done", at=T0)
    assert card_fields(task)["error"] is None and card_fields(task)["result"] == "done"


@pytest.mark.parametrize(
    ("name", "wire_type"),
    [
        ("task_submitted.json", ev.TaskSubmitted),
        ("task_failed.json", ev.TaskFailed),
        ("task_queued.json", TaskQueued),
        ("task_cancel_notice.json", TaskCancelNotice),
    ],
)
def test_golden_files_decode_and_reencode_byte_for_byte(name: str, wire_type: type) -> None:
    raw = (GOLDEN / name).read_bytes()
    assert msgspec.json.encode(msgspec.json.decode(raw, type=wire_type)) == raw


def test_arguments_results_and_progress_messages_are_personal_and_erase_to_their_type() -> None:
    assert sealed.PERSONAL["task.submitted"] == ("kwargs", "user.email")
    assert sealed.PERSONAL["task.completed"] == ("result",)
    assert sealed.PERSONAL["task.progressed"] == ("message",)
    erased = sealed.placeholder("kwargs", {})
    msgspec.convert({"app": "a", "name": "t", "kwargs": erased}, ev.TaskSubmitted)


def test_the_tasks_projection_makes_a_row_and_updates_it() -> None:
    task_id = uuid4().hex

    def event(version: int, payload: ev.EventPayload) -> Event:
        return Event(
            position=version, stream_id=f"task:{task_id}", version=version, type=payload.TYPE,
            recorded_at=T0 + timedelta(seconds=version), correlation_id=None,
            causation_id=None, actor=None, payload=payload,
        )  # fmt: skip

    first = Tasks().apply([event(1, ev.TaskSubmitted(app="a", name="t", kwargs={}))])
    assert first[0].rows[0][:8] == (task_id, "a", "t", None, None, "submitted", 0, 0)
    later = Tasks().apply(
        [
            event(2, ev.TaskStarted(attempt=1, worker="w1")),
            event(3, ev.TaskFailed(attempt=1, error_type="E", error_message="m", will_retry=False)),
        ]
    )
    [update] = later
    assert isinstance(update, Exec) and len(update.rows) == 1
    row = update.rows[0]  # the task id, then (changed?, value) for each column
    assert row[1:5] == (True, "failed", True, 1)  # status, attempts
    assert row[13:15] == (True, T0 + timedelta(seconds=3))  # finished_at


def test_tasks_are_declared_async_with_a_word_for_a_name_once_per_app() -> None:
    app = turnlog.App("reports")

    @app.task(retries=1, timeout=5)
    async def build(session: Any, n: int) -> int:
        return n

    assert app.tasks["build"] is build and (build.retries, build.timeout) == (1, 5.0)
    assert asyncio.run(build(None, n=3)) == 3  # called directly: runs here, nothing recorded

    def plain(session: Any) -> None: ...

    with pytest.raises(turnlog.AppError, match="async def"):
        app.task(plain)
    with pytest.raises(turnlog.AppError, match="already has a task"):

        @app.task(name="build")
        async def other(session: Any) -> None: ...

    with pytest.raises(turnlog.AppError, match="retries"):
        app.task(retries=-1)(build.fn)
    with pytest.raises(turnlog.AppError, match="one word"):
        app.task(name="a.b")(build.fn)


async def test_submitting_while_the_app_is_not_served_says_so() -> None:
    app = turnlog.App("reports")

    @app.task
    async def build(session: Any) -> None: ...

    with pytest.raises(RuntimeError, match="only while turnlog serves it"):
        await build.submit()
