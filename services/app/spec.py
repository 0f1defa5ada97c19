"""What the runtime needs of an app, and how it presents itself to the app's code: the
handlers and hooks it calls, and the sessions it hands them. ``turnlog.App`` (the SDK)
is one; the runtime knows it only through these Protocols."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from turnlog.domain.errors import TurnlogError
from turnlog.services.app.context import Runtime
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.sessions.live import LiveSession
from turnlog.services.app.values import UserInfo

Hook = Callable[..., Any]


class AppError(TurnlogError):
    """Raised when an app is declared wrongly (two message handlers, a bad name, ...), or
    is served without what it needs (a message handler)."""

    code = "app_error"


class Poster(Protocol):
    """Records a task's effects (replies, notifications, blocks) on a session."""

    async def post(self, session_id: str, meta: Metadata, item: Any) -> None: ...


class Facades(Protocol):
    """The objects an app's code is handed: sessions of each kind, a task's attempt."""

    def session(
        self, live: LiveSession, data: dict[str, Any], integrations: Mapping[str, Any],
        runtime: Runtime,
    ) -> Any: ...  # fmt: skip

    def scheduled(
        self, *, stream_id: str, schedule: str, tick: datetime, user: UserInfo,
        meta: Metadata, integrations: Mapping[str, Any], runtime: Runtime,
    ) -> Any: ...  # fmt: skip

    def task_session(
        self, *, task_id: str, name: str, session_id: str | None, user: UserInfo,
        poster: Poster, integrations: Mapping[str, Any], runtime: Runtime,
    ) -> Any: ...  # fmt: skip

    def task_run(
        self, task_id: str, name: str, attempt: int,
        report: Callable[[float | None, str], Awaitable[None]],
    ) -> Any: ...  # fmt: skip


class Cron(Protocol):
    def next_after(self, moment: datetime) -> datetime: ...

    def latest_at_or_before(self, moment: datetime) -> datetime: ...


class ScheduleSpec(Protocol):
    @property
    def app_name(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def cron(self) -> Cron: ...

    @property
    def owner(self) -> UserInfo: ...

    @property
    def handler(self) -> Hook: ...

    @property
    def stream_id(self) -> str: ...


class TaskSpec(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def fn(self) -> Callable[..., Awaitable[Any]]: ...

    @property
    def retries(self) -> int: ...

    @property
    def timeout(self) -> float: ...


class AppSpec(Protocol):
    """An app as the runtime sees it."""

    @property
    def name(self) -> str: ...

    @property
    def message_handler(self) -> Hook | None: ...

    @property
    def resume_turns(self) -> bool:
        """Whether a turn cut off by a crash is resumed (its handler run again for its
        message) rather than recorded interrupted."""
        ...

    @property
    def boot_hooks(self) -> list[Hook]: ...

    @property
    def enter_hooks(self) -> list[Hook]: ...

    @property
    def exit_hooks(self) -> list[Hook]: ...

    @property
    def shutdown_hooks(self) -> list[Hook]: ...

    @property
    def schedules(self) -> Mapping[str, ScheduleSpec]: ...

    @property
    def tasks(self) -> Mapping[str, TaskSpec]: ...

    @property
    def facades(self) -> Facades: ...
