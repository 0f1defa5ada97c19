"""Payloads of a background task's events, from its submission to how it ended."""

from __future__ import annotations

from typing import Any, ClassVar

from turnlog.contracts.event_payload import EventPayload, UserRef


class TaskSubmitted(EventPayload, frozen=True, kw_only=True):
    """Recorded when a background task is submitted (stream ``task:<task_id>``), before
    it is queued: its app and name, its plain-JSON arguments, the session it was submitted
    from (its replies and card go there) and that session's user, whose key seals the
    arguments. ``timeout`` 0: none; ``retries``: how often a failure is retried."""

    TYPE: ClassVar[str] = "task.submitted"
    PERSONAL: ClassVar[tuple[str, ...]] = ("kwargs", "user.email")
    app: str
    name: str
    kwargs: dict[str, Any]
    session_id: str | None = None
    user: UserRef | None = None
    retries: int = 0
    timeout: float = 0.0


class TaskStarted(EventPayload, frozen=True, kw_only=True):
    """Recorded when a worker starts an attempt of a task (1 for the first run)."""

    TYPE: ClassVar[str] = "task.started"
    attempt: int
    worker: str


class TaskProgressed(EventPayload, frozen=True, kw_only=True):
    """Recorded when a running task reports progress: a fraction done (0 to 1, or null)
    and a message."""

    TYPE: ClassVar[str] = "task.progressed"
    PERSONAL: ClassVar[tuple[str, ...]] = ("message",)
    progress: float | None = None
    message: str = ""


class TaskCompleted(EventPayload, frozen=True, kw_only=True):
    """Recorded when an attempt returns: the task's plain-JSON result. The task is done."""

    TYPE: ClassVar[str] = "task.completed"
    PERSONAL: ClassVar[tuple[str, ...]] = ("result",)
    result: Any = None


class TaskFailed(EventPayload, frozen=True, kw_only=True):
    """Recorded when an attempt raises or runs out of time (``TimeoutError``), or its
    worker stopped (``WorkerLost``); ``will_retry``: another attempt follows."""

    TYPE: ClassVar[str] = "task.failed"
    attempt: int
    error_type: str
    error_message: str
    will_retry: bool


class TaskCancelled(EventPayload, frozen=True, kw_only=True):
    """Recorded when a task is cancelled before it finished; a running attempt is
    stopped, and nothing more is recorded on the task."""

    TYPE: ClassVar[str] = "task.cancelled"
    reason: str = ""


TASK_PAYLOADS: tuple[type[EventPayload], ...] = (
    TaskSubmitted,
    TaskStarted,
    TaskProgressed,
    TaskCompleted,
    TaskFailed,
    TaskCancelled,
)
