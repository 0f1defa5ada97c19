"""Tasks on the event log: the Task aggregate on its stream ``task:<id>``. The arguments, progress
messages and result are sealed with the key of the submitting session's user."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from turnlog.domain.task import Task
from turnlog.services.app.aggregates import AggregateStore
from turnlog.services.app.log.records import RecordedEvent
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.ports import EventLog
from turnlog.services.app.tasks.values import TaskStatus, UnknownTask

STREAM_PREFIX = "task:"


def stream_of(task_id: str) -> str:
    return f"{STREAM_PREFIX}{task_id}"


def task_uuid(task_id: str) -> UUID:
    try:
        return UUID(hex=task_id)
    except ValueError:
        raise UnknownTask(task_id) from None


class TaskLog:
    """Tasks as aggregates on their streams; ``ConcurrencyConflict`` when something was
    recorded on a task since it was loaded."""

    def __init__(self, store: EventLog) -> None:
        self.store = store
        self.aggregates = AggregateStore(store)

    async def load(self, task_id: str) -> Task:
        uid = task_uuid(task_id)
        task = await self.aggregates.load(stream_of(uid.hex), uid, kind=Task)
        if task is None:
            raise UnknownTask(task_id)
        return task

    async def save(self, task: Task, meta: Metadata) -> list[RecordedEvent]:
        user = task.user.id if task.user is not None else None
        return await self.aggregates.save(stream_of(task.task_id), task, meta, user=user)


def status_of(task: Task) -> TaskStatus:
    error = task.error if task.status in ("failed", "retrying") else None
    return TaskStatus(
        task_id=task.task_id,
        name=task.name,
        status=task.status,
        attempts=task.attempts,
        retries=task.retries,
        session_id=task.session_id,
        progress=task.progress,
        progress_message=task.progress_message,
        result=task.result,
        error_type=error[0] if error else None,
        error_message=error[1] if error else None,
        submitted_at=task.created_on,
        updated_at=_modified(task),
    )


def _modified(task: Task) -> datetime:
    modified: datetime = task.modified_on
    return modified
