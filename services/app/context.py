"""What code running for an app can reach without being handed it: the session (or
request, or task attempt) it runs for, and the runtime serving its app. Context
variables, set by the runtime around each handler, hook, run and attempt it calls, so
they follow the code into any task it starts."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from turnlog.services.app.ports import Clock, system_clock

if TYPE_CHECKING:
    from turnlog.services.app.collections import Documents
    from turnlog.services.app.ports import Files
    from turnlog.services.app.tasks.values import TaskBackend


@dataclass(frozen=True)
class Runtime:
    """What an app's code reaches through turnlog while it is served: its collections'
    documents, its tasks, the file store (None: not served here), and the clock its
    records are stamped with."""

    app: str
    documents: Documents | None = None
    tasks: TaskBackend | None = None
    files: Files | None = None
    clock: Clock = system_clock


caller: ContextVar[Any] = ContextVar("turnlog_current_session", default=None)
"""The Session (ScheduledSession, TaskSession) of the handler running now."""

request: ContextVar[Any] = ContextVar("turnlog_current_request", default=None)
"""The RequestContext of the data or endpoint handler running now."""

task: ContextVar[Any] = ContextVar("turnlog_current_task", default=None)
"""The TaskRun of the task attempt running now."""

runtime: ContextVar[Runtime | None] = ContextVar("turnlog_runtime", default=None)
"""The runtime serving the app whose code runs now."""
