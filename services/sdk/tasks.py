"""Background tasks: ``@app.task`` declares one, ``await t.submit(session=..., **kwargs)``
queues a run of it on the runtime workers and returns a ``TaskHandle``.

The task function is ``async def fn(session, **kwargs)``: ``session`` is a
``TaskSession`` for the session it was submitted from, so it can reply there. Its
arguments and result are plain JSON, recorded on the task's own stream.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from turnlog.services.app.mapping import Metadata
from turnlog.services.sdk.context import current_caller
from turnlog.services.sdk.session import Session
from turnlog.services.sdk.task_session import TaskSession
from turnlog.services.sdk.types import UserInfo

FINISHED = ("completed", "failed", "cancelled")


class TaskDeclarationError(Exception):
    """Raised when a task is declared wrongly: a bad name, retries or timeout, or a
    function that is not ``async def``."""


class TasksNotServed(RuntimeError):
    """Raised when a task is submitted, or a handle asked about, while turnlog does not
    serve the app (no runtime is running it)."""


class UnknownTask(LookupError):
    """Raised when a handle names a task that is not on record."""

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

    async def submit(self, task: TaskDef, kwargs: dict[str, Any], origin: Origin) -> str: ...

    async def status(self, task_id: str) -> TaskStatus: ...

    async def cancel(self, task_id: str, reason: str, meta: Metadata) -> bool: ...


class TaskBinding:
    """The backend an app's tasks use once the app is served (shared by them all)."""

    def __init__(self) -> None:
        self.backend: TaskBackend | None = None

    def get(self, app_name: str) -> TaskBackend:
        if self.backend is None:
            raise TasksNotServed(f"tasks of app {app_name!r} run only while turnlog serves it")
        return self.backend


class TaskDef:
    """A declared task: ``submit`` queues a run; calling it runs the function here."""

    def __init__(
        self,
        app_name: str,
        fn: Callable[..., Any],
        binding: TaskBinding,
        *,
        name: str | None = None,
        retries: int = 0,
        timeout: float = 0.0,
    ) -> None:
        self.app_name, self.fn, self._binding = app_name, fn, binding
        self.name = name or fn.__name__
        if not self.name or any(c in self.name for c in " .*>:") or not self.name.isprintable():
            raise TaskDeclarationError(f"a task name is one word without dots: {self.name!r}")
        if not inspect.iscoroutinefunction(fn):
            raise TaskDeclarationError(f"task {self.name!r} must be an async def function")
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 100:
            raise TaskDeclarationError(f"retries must be an int from 0 to 100, not {retries!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise TaskDeclarationError(f"timeout must be seconds >= 0 (0: none), not {timeout!r}")
        self.retries, self.timeout = retries, float(timeout)

    async def submit(self, session: Any = None, **kwargs: Any) -> TaskHandle:
        """Record the task as submitted and queue it; ``session`` (the current one by
        default) is where it replies and whose user it acts for."""
        origin = _origin(self.app_name, session)
        task_id = await self._binding.get(self.app_name).submit(self, kwargs, origin)
        return TaskHandle(task_id, self.name, self._binding, self.app_name)

    def handle(self, task_id: str) -> TaskHandle:
        """The handle of a task of this kind submitted earlier, by its id."""
        return TaskHandle(task_id, self.name, self._binding, self.app_name)

    async def __call__(self, session: Any, **kwargs: Any) -> Any:
        """Run the function here and now (not queued, nothing recorded)."""
        return await self.fn(session, **kwargs)

    def __repr__(self) -> str:
        return f"TaskDef({self.app_name!r}, {self.name!r})"


class TaskHandle:
    """A submitted task: its id, its status on record, and a way to cancel it."""

    def __init__(self, task_id: str, name: str, binding: TaskBinding, app_name: str) -> None:
        self.task_id, self.name = task_id, name
        self._binding, self._app_name = binding, app_name

    async def status(self) -> TaskStatus:
        return await self._binding.get(self._app_name).status(self.task_id)

    async def cancel(self, reason: str = "cancelled") -> bool:
        """Record the task cancelled and stop it if it runs; False if it had finished."""
        caller = current_caller()
        meta = caller._meta() if caller is not None else Metadata(actor=f"app:{self._app_name}")
        return await self._binding.get(self._app_name).cancel(self.task_id, reason, meta)

    def __repr__(self) -> str:
        return f"TaskHandle({self.task_id!r}, {self.name!r})"


def _origin(app_name: str, session: Any) -> Origin:
    caller = session if session is not None else current_caller()
    if caller is None:
        return Origin(None, None, Metadata(actor=f"app:{app_name}"))
    replaying = caller._replaying()
    if replaying is not None:
        raise replaying.refuse("submitting a task")
    session_id: str | None = None
    if isinstance(caller, Session):
        session_id = caller.id
    elif isinstance(caller, TaskSession):
        session_id = caller.session_id
    meta: Metadata = caller._meta()
    return Origin(session_id, caller.user, meta)
