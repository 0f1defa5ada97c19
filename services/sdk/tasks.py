"""Background tasks: ``@app.task`` declares one, ``await t.submit(session=..., **kwargs)``
queues a run of it on the runtime workers and returns a ``TaskHandle``.

The task function is ``async def fn(session, **kwargs)``: ``session`` is a
``TaskSession`` for the session it was submitted from, so it can reply there. Its
arguments and result are plain JSON, recorded on the task's own stream.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from turnlog.domain.errors import TurnlogError
from turnlog.services.app import context
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.tasks.values import (
    Origin,
    TaskBackend,
    TasksNotServed,
    TaskStatus,
)
from turnlog.services.sdk.context import current_caller
from turnlog.services.sdk.session import Session
from turnlog.services.sdk.task_session import TaskSession


class TaskDeclarationError(TurnlogError):
    """Raised when a task is declared wrongly: a bad name, retries or timeout, or a
    function that is not ``async def``."""

    code = "task_declaration_error"


class TaskDef:
    """A declared task: ``submit`` queues a run; calling it runs the function here."""

    def __init__(
        self,
        app_name: str,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        retries: int = 0,
        timeout: float = 0.0,
    ) -> None:
        self.app_name, self.fn = app_name, fn
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
        task_id = await _backend(self.app_name, session).submit(self, kwargs, origin)
        return TaskHandle(task_id, self.name, self.app_name)

    def handle(self, task_id: str) -> TaskHandle:
        """The handle of a task of this kind submitted earlier, by its id."""
        return TaskHandle(task_id, self.name, self.app_name)

    async def __call__(self, session: Any, **kwargs: Any) -> Any:
        """Run the function here and now (not queued, nothing recorded)."""
        return await self.fn(session, **kwargs)

    def __repr__(self) -> str:
        return f"TaskDef({self.app_name!r}, {self.name!r})"


class TaskHandle:
    """A submitted task: its id, its status on record, and a way to cancel it."""

    def __init__(self, task_id: str, name: str, app_name: str) -> None:
        self.task_id, self.name, self._app_name = task_id, name, app_name

    async def status(self) -> TaskStatus:
        return await _backend(self._app_name).status(self.task_id)

    async def cancel(self, reason: str = "cancelled") -> bool:
        """Record the task cancelled and stop it if it runs; False if it had finished."""
        caller = current_caller()
        meta = caller._meta() if caller is not None else Metadata(actor=f"app:{self._app_name}")
        return await _backend(self._app_name).cancel(self.task_id, reason, meta)

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


def _backend(app_name: str, session: Any = None) -> TaskBackend:
    """The tasks of ``app_name`` as the runtime serving it gives them: the runtime of
    ``session`` (or of the current caller), else the one running this code."""
    caller = session if session is not None else current_caller()
    runtime = caller._runtime if caller is not None else context.runtime.get()
    if runtime is None or runtime.tasks is None:
        raise TasksNotServed(f"tasks of app {app_name!r} run only while turnlog serves it")
    return runtime.tasks
