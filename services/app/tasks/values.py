"""Tasks as the application knows them: a task's status on record, who submits it, and
the ``TaskBackend`` that submits, reads and cancels tasks for an app's code."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from turnlog.domain.errors import TurnlogError
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.values import UserInfo

if TYPE_CHECKING:
    from turnlog.services.app.spec import TaskSpec

FINISHED = ("completed", "failed", "cancelled")


class TasksNotServed(TurnlogError, RuntimeError):
    """Raised when a task is submitted, or a handle asked about, while turnlog does not
    serve the app (no runtime is running it)."""

    code = "tasks_not_served"


class UnknownTask(TurnlogError, LookupError):
    """Raised when a handle names a task that is not on record."""

    code = "unknown_task"

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(f"no task {task_id!r} on record")


@dataclass(frozen=True)
class TaskStatus:
    """A task as its record says now."""

    task_id: str
    name: str
    status: str  # submitted, running, retrying, completed, failed, cancelled
    attempts: int
    retries: int
    session_id: str | None
    progress: float | None
    progress_message: str
    result: Any
    error_type: str | None
    error_message: str | None
    submitted_at: datetime
    updated_at: datetime

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True)
class Origin:
    """Who submits a task: the session it answers to (None: none), its user, and the
    ids its submission is recorded with."""

    session_id: str | None
    user: UserInfo | None
    meta: Metadata


class TaskBackend(Protocol):
    """What the runtime gives an app's tasks: the record and the queue."""

    async def submit(self, task: TaskSpec, kwargs: dict[str, Any], origin: Origin) -> str: ...

    async def status(self, task_id: str) -> TaskStatus: ...

    async def cancel(self, task_id: str, reason: str, meta: Metadata) -> bool: ...
