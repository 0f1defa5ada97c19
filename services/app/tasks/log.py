"""Tasks on the event store: the Task aggregate folded from its stream ``task:<id>``, and
its new events appended at the version it was folded at. The arguments, progress
messages and result are sealed with the key of the submitting session's user."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, CanMutateAggregate

from turnlog.contracts import events as ev
from turnlog.domain.task import Task
from turnlog.services.app.log.codec import EventCodec
from turnlog.services.app.log.records import NewEvent, RecordedEvent
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.ports import EventLog
from turnlog.services.app.sealing import KeyRing
from turnlog.services.app.tasks.values import TaskStatus, UnknownTask

PAIRS: tuple[tuple[type[Aggregate.Event], type[ev.EventPayload]], ...] = (
    (Task.Submitted, ev.TaskSubmitted),
    (Task.Started, ev.TaskStarted),
    (Task.Progressed, ev.TaskProgressed),
    (Task.Completed, ev.TaskCompleted),
    (Task.Failed, ev.TaskFailed),
    (Task.Cancelled, ev.TaskCancelled),
)
_TO_WIRE = dict(PAIRS)
_TO_DOMAIN = {payload.TYPE: event for event, payload in PAIRS}
_TOPIC = f"{Task.__module__}:{Task.__qualname__}"
STREAM_PREFIX = "task:"

codec = EventCodec(ev.TASK_PAYLOADS)


def stream_of(task_id: str) -> str:
    return f"{STREAM_PREFIX}{task_id}"


def to_new_event(event: CanMutateAggregate[UUID], meta: Metadata) -> NewEvent:
    payload_type = _TO_WIRE[type(event)]  # type: ignore[index]
    payload = payload_type(**{f: getattr(event, f) for f in payload_type.__struct_fields__})
    return NewEvent(
        type=payload_type.TYPE,
        schema_version=payload_type.SCHEMA_VERSION,
        payload=codec.encode(payload),
        recorded_at=event.timestamp,
        correlation_id=meta.correlation_id,
        causation_id=meta.causation_id,
        actor=meta.actor,
    )


def to_domain_event(record: RecordedEvent, task_id: UUID) -> Aggregate.Event:
    payload = codec.decode(record.type, record.schema_version, record.payload)
    fields: dict[str, Any] = {f: getattr(payload, f) for f in payload.__struct_fields__}
    if record.type == ev.TaskSubmitted.TYPE:
        fields["originator_topic"] = _TOPIC
    return _TO_DOMAIN[record.type](
        originator_id=task_id,
        originator_version=record.version,
        timestamp=record.recorded_at,
        **fields,
    )


def task_uuid(task_id: str) -> UUID:
    try:
        return UUID(hex=task_id)
    except ValueError:
        raise UnknownTask(task_id) from None


class TaskLog:
    """Tasks as aggregates on their streams; ``ConcurrencyConflict`` when something was
    recorded on a task since it was loaded."""

    def __init__(self, store: EventLog, keyring: KeyRing | None = None) -> None:
        self.store = store
        self.keyring = keyring or store.keyring

    async def load(self, task_id: str) -> Task:
        uid = task_uuid(task_id)
        records = await self.keyring.unseal(await self.store.read_stream(stream_of(uid.hex)))
        task: Task | None = None
        for record in records:
            task = to_domain_event(record, uid).mutate(task)
        if task is None:
            raise UnknownTask(task_id)
        return task

    async def save(self, task: Task, meta: Metadata) -> list[RecordedEvent]:
        pending = task.collect_events()
        if not pending:
            return []
        new = [to_new_event(e, meta) for e in pending]
        if task.user is not None:
            new = await self.keyring.seal(task.user.id, new)
        expected = pending[0].originator_version - 1
        return await self.store.append(stream_of(task.task_id), expected, new)


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
