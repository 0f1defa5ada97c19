"""How an app presents itself to its own code: the runtime asks ``app.facades`` for the
session objects it hands handlers, scheduled runs and tasks (``Session``,
``ScheduledSession``, ``TaskSession``, ``TaskRun``), so the runtime needs no SDK."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from turnlog.services.app.context import Runtime
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.sessions.live import LiveSession
from turnlog.services.app.spec import Poster
from turnlog.services.app.values import UserInfo
from turnlog.services.sdk.scheduled import ScheduledSession
from turnlog.services.sdk.session import Session
from turnlog.services.sdk.task_session import TaskRun, TaskSession

if TYPE_CHECKING:
    from turnlog.services.sdk.app import App


class Facades:
    """The sessions of one app, each seeing the app's collections through ``runtime``."""

    def __init__(self, app: App) -> None:
        self.app = app

    def session(
        self, live: LiveSession, data: dict[str, Any], integrations: Mapping[str, Any],
        runtime: Runtime,
    ) -> Session:  # fmt: skip
        return Session(live, data, integrations, self.app.collections, runtime)

    def scheduled(
        self, *, stream_id: str, schedule: str, tick: datetime, user: UserInfo,
        meta: Metadata, integrations: Mapping[str, Any], runtime: Runtime,
    ) -> ScheduledSession:  # fmt: skip
        return ScheduledSession(
            stream_id=stream_id, schedule=schedule, tick=tick, user=user, meta=meta,
            collections=self.app.collections, integrations=integrations, runtime=runtime,
        )  # fmt: skip

    def task_session(
        self, *, task_id: str, name: str, session_id: str | None, user: UserInfo,
        poster: Poster, integrations: Mapping[str, Any], runtime: Runtime,
    ) -> TaskSession:  # fmt: skip
        return TaskSession(
            task_id=task_id, name=name, session_id=session_id, user=user, poster=poster,
            collections=self.app.collections, integrations=integrations, runtime=runtime,
        )  # fmt: skip

    def task_run(
        self, task_id: str, name: str, attempt: int,
        report: Callable[[float | None, str], Awaitable[None]],
    ) -> TaskRun:  # fmt: skip
        return TaskRun(task_id, name, attempt, report)
