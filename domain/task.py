"""The Task aggregate: one background task, from its submission to how it ended.

A task is submitted with plain-JSON arguments, then runs in attempts on runtime workers:
each attempt starts, may report progress, and completes or fails. A failure is retried
while attempts remain (``retries`` + 1 in all); a cancellation ends the task wherever it
is. Whatever is recorded first wins: once a task has finished (completed, failed for
good, or cancelled), nothing more is recorded on it.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from turnlog.contracts.events import UserRef
from turnlog.domain import values
from turnlog.domain.errors import DomainError, InvalidValue

SUBMITTED, RUNNING, RETRYING = "submitted", "running", "retrying"
COMPLETED, FAILED, CANCELLED = "completed", "failed", "cancelled"
FINISHED = (COMPLETED, FAILED, CANCELLED)
MAX_RETRIES = 100


class TaskError(DomainError):
    """Base of the errors a task's record raises for a command it refuses."""

    code = "task_error"


class TaskFinished(TaskError):
    """Raised when anything is recorded on a task that has completed, failed for good or
    been cancelled."""

    code = "task_finished"

    def __init__(self, task_id: str, status: str) -> None:
        self.task_id, self.status = task_id, status
        super().__init__(f"task {task_id} has {status}; nothing more can be recorded on it")


class TaskNotRunning(TaskError):
    """Raised when progress or an attempt's outcome is recorded while no attempt runs."""

    code = "task_not_running"

    def __init__(self, task_id: str, status: str) -> None:
        self.task_id, self.status = task_id, status
        super().__init__(f"task {task_id} has no attempt running (it is {status})")


class TaskRunning(TaskError):
    """Raised when an attempt is started while another one is still running."""

    code = "task_running"

    def __init__(self, task_id: str, attempt: int) -> None:
        self.task_id, self.attempt = task_id, attempt
        super().__init__(f"attempt {attempt} of task {task_id} is still running")


class Task(Aggregate):
    """A background task's record: its arguments, its attempts and its outcome."""

    class Submitted(Aggregate.Created):
        app: str
        name: str
        kwargs: dict[str, Any]
        session_id: str | None
        user: UserRef | None
        retries: int
        timeout: float

    class Started(Aggregate.Event):
        attempt: int
        worker: str

        def apply(self, task: Task) -> None:
            task.status, task.attempts, task.worker = RUNNING, self.attempt, self.worker
            task.progress, task.progress_message = None, ""

    class Progressed(Aggregate.Event):
        progress: float | None
        message: str

        def apply(self, task: Task) -> None:
            task.progress, task.progress_message = self.progress, self.message

    class Completed(Aggregate.Event):
        result: Any

        def apply(self, task: Task) -> None:
            task.status, task.result, task.worker = COMPLETED, self.result, None

    class Failed(Aggregate.Event):
        attempt: int
        error_type: str
        error_message: str
        will_retry: bool

        def apply(self, task: Task) -> None:
            task.status = RETRYING if self.will_retry else FAILED
            task.error = (self.error_type, self.error_message)
            task.worker = None

    class Cancelled(Aggregate.Event):
        reason: str

        def apply(self, task: Task) -> None:
            task.status, task.cancel_reason, task.worker = CANCELLED, self.reason, None

    def __init__(
        self,
        app: str,
        name: str,
        kwargs: dict[str, Any],
        session_id: str | None,
        user: UserRef | None,
        retries: int,
        timeout: float,
    ) -> None:
        self.app, self.name, self.kwargs = app, name, kwargs
        self.session_id, self.user = session_id, user
        self.retries, self.timeout = retries, timeout
        self.status = SUBMITTED
        self.attempts = 0
        self.worker: str | None = None
        self.progress: float | None = None
        self.progress_message = ""
        self.result: Any = None
        self.error: tuple[str, str] | None = None
        self.cancel_reason: str | None = None

    # -- commands ---------------------------------------------------------------------

    @classmethod
    def submit(
        cls,
        task_id: UUID,
        *,
        app: str,
        name: str,
        kwargs: dict[str, Any],
        at: datetime,
        session_id: str | None = None,
        user: UserRef | None = None,
        retries: int = 0,
        timeout: float = 0.0,
    ) -> Task:
        """``timeout`` 0 means none; ``retries`` is how many times a failure is retried."""
        values.name(app, "app name")
        values.name(name, "task name")
        if not isinstance(kwargs, dict):
            raise InvalidValue(f"task arguments are a dict, not {type(kwargs).__name__}")
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise InvalidValue(f"retries must be an int, not {retries!r}")
        if not 0 <= retries <= MAX_RETRIES:
            raise InvalidValue(f"retries must be from 0 to {MAX_RETRIES}, not {retries}")
        if not isinstance(timeout, int | float) or not math.isfinite(timeout) or timeout < 0:
            raise InvalidValue(f"timeout must be a number of seconds >= 0, not {timeout!r}")
        return cls._create(
            cls.Submitted,
            id=task_id,
            timestamp=at,
            app=app,
            name=name,
            kwargs=values.bounded_json(kwargs, f"arguments of task {name!r}"),
            session_id=session_id,
            user=user,
            retries=retries,
            timeout=float(timeout),
        )

    def start(self, worker: str, *, at: datetime) -> None:
        """Start the next attempt (the first, or a retry after a failure)."""
        self._check_live()
        if self.status == RUNNING:
            raise TaskRunning(self.task_id, self.attempts)
        self.trigger_event(
            self.Started,
            timestamp=at,
            attempt=self.attempts + 1,
            worker=values.name(worker, "worker"),
        )

    def report_progress(self, progress: float | None, message: str = "", *, at: datetime) -> None:
        """``progress`` is a fraction done (0 to 1) or None; ``message`` says what goes on."""
        self._check_running()
        if progress is not None:
            if isinstance(progress, bool) or not isinstance(progress, int | float):
                raise InvalidValue(f"progress must be a number from 0 to 1, not {progress!r}")
            if not 0 <= progress <= 1:
                raise InvalidValue(f"progress must be from 0 to 1, not {progress}")
            progress = float(progress)
        self.trigger_event(
            self.Progressed,
            timestamp=at,
            progress=progress,
            message=values.bounded_text(message, "progress message", 4096),
        )

    def complete(self, result: Any, *, at: datetime) -> None:
        self._check_running()
        plain = values.bounded_json(result, f"result of task {self.name!r}")
        self.trigger_event(self.Completed, timestamp=at, result=plain)

    def fail(self, error_type: str, error_message: str, *, at: datetime) -> None:
        """Record the running attempt's failure; it is retried while attempts remain."""
        self._check_running()
        self.trigger_event(
            self.Failed,
            timestamp=at,
            attempt=self.attempts,
            error_type=values.error_text(error_type, 256) or "Error",
            error_message=values.error_text(error_message),
            will_retry=self.attempts <= self.retries,
        )

    def cancel(self, reason: str, *, at: datetime) -> None:
        self._check_live()
        self.trigger_event(self.Cancelled, timestamp=at, reason=values.error_text(reason))

    # -- queries ------------------------------------------------------------------------

    @property
    def task_id(self) -> str:
        return self.id.hex

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    # -- helpers ------------------------------------------------------------------------

    def _check_live(self) -> None:
        if self.finished:
            raise TaskFinished(self.task_id, self.status)

    def _check_running(self) -> None:
        self._check_live()
        if self.status != RUNNING:
            raise TaskNotRunning(self.task_id, self.status)
