"""Submitting, reading and cancelling tasks: what an app's ``TaskDef`` and ``TaskHandle``
do, on the event store and the task queue."""

from __future__ import annotations

import uuid
from typing import Any

import structlog

from turnlog.contracts.events import UserRef
from turnlog.domain.task import Task
from turnlog.services.app.log.errors import ConcurrencyConflict, StoreError
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.ports import Clock, TaskQueue, system_clock
from turnlog.services.app.spec import TaskSpec
from turnlog.services.app.tasks.log import TaskLog, status_of
from turnlog.services.app.tasks.values import Origin, TaskStatus

log = structlog.get_logger("turnlog.tasks")


class TaskNotQueued(StoreError):
    """Raised by ``submit`` when a task is on record but could not be queued (NATS is
    away); the task is recorded cancelled, with the reason."""

    code = "task_not_queued"


class TaskService:
    """The tasks of one app: recorded on their streams, queued for workers."""

    def __init__(
        self, app_name: str, log: TaskLog, queue: TaskQueue, clock: Clock = system_clock
    ) -> None:
        self.app_name, self.log, self.queue, self.clock = app_name, log, queue, clock

    async def submit(self, task: TaskSpec, kwargs: dict[str, Any], origin: Origin) -> str:
        user = origin.user
        record = Task.submit(
            uuid.uuid4(),
            app=self.app_name,
            name=task.name,
            kwargs=kwargs,
            at=self.clock(),
            session_id=origin.session_id,
            user=UserRef(id=user.id, email=user.email, org_id=user.org_id) if user else None,
            retries=task.retries,
            timeout=task.timeout,
        )
        await self.log.save(record, origin.meta)
        try:
            await self.queue.enqueue(self.app_name, task.name, record.task_id)
        except Exception as e:
            reason = f"not queued: {e or type(e).__name__}"
            await self.cancel(record.task_id, reason, origin.meta)
            raise TaskNotQueued(f"task {task.name!r} could not be queued: {e}") from e
        log.info("task submitted", task=task.name, task_id=record.task_id)
        return record.task_id

    async def status(self, task_id: str) -> TaskStatus:
        return status_of(await self.log.load(task_id))

    async def cancel(self, task_id: str, reason: str, meta: Metadata) -> bool:
        """Record the task cancelled (False if it had finished), then tell the worker
        running it to stop it."""
        for _ in range(10):
            task = await self.log.load(task_id)
            if task.finished:
                return False
            task.cancel(reason, at=self.clock())
            try:
                await self.log.save(task, meta)
            except ConcurrencyConflict:
                continue  # a worker recorded something meanwhile: look again
            break
        else:
            raise StoreError(f"task {task_id} kept changing; not cancelled")
        try:
            await self.queue.announce_cancel(self.app_name, task_id, reason)
        except Exception as e:  # the worker finds it cancelled when it records next
            log.warning("announcing a cancellation failed", task_id=task_id, error=str(e))
        log.info("task cancelled", task_id=task_id, reason=reason)
        return True
