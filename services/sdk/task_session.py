"""What a background task sees: ``TaskSession`` (its ``session`` argument, and
``current_session()`` while it runs) and ``current_task()`` (its id, attempt, progress)."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, NoReturn, Protocol, cast

from turnlog.services.app import context
from turnlog.services.app.context import Runtime
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.sessions.outbound import BlockView, Notification, Reply
from turnlog.services.sdk.collections import Collection, HasCollections
from turnlog.services.sdk.scheduled import NoReplyTarget
from turnlog.services.sdk.types import Block, SessionChannel, UserInfo

Effect = Reply | Notification | BlockView


class Poster(Protocol):
    """Records what a task shows in its session, between that session's turns, and
    delivers it once it is on record."""

    async def post(self, session_id: str, meta: Metadata, item: Effect) -> None: ...


class NoSession(NoReplyTarget):
    """Raised when a task submitted outside any chat session (a schedule, a request)
    replies, notifies or shows something: it has no one to answer."""

    code = "no_session"

    def __init__(self, method: str, task: str) -> None:
        self.method, self.schedule = method, task
        RuntimeError.__init__(
            self,
            f"task {task!r} was submitted outside a chat session: session.{method}() has"
            " no one to answer",
        )


class TaskSession(HasCollections):
    """The session a task was submitted from, as the task sees it: ``id``, ``user``,
    ``channel`` (type ``task``), ``integrations`` and ``db`` (collections scoped as that
    session's), and ``reply``, ``notify``, ``show``, ``show_task``, ``show_image``, which
    are recorded on the session (actor ``task:<name>``, correlation id the task id)
    between its turns and delivered live. They return once that is done. History and
    ``session.data`` belong to turns and are not here."""

    def __init__(
        self,
        *,
        task_id: str,
        name: str,
        session_id: str | None,
        user: UserInfo,
        poster: Poster,
        collections: dict[str, Collection] | None = None,
        integrations: Mapping[str, Any] | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        self._runtime = runtime or Runtime("")
        self.task_id, self.task_name = task_id, name
        self.session_id = session_id
        self.id = session_id or f"task:{task_id}"
        self.user = user
        self.channel = SessionChannel(type="task", name=name)
        self.integrations: Mapping[str, Any] = MappingProxyType(dict(integrations or {}))
        self._poster = poster
        self._collections = collections or {}

    def _meta(self) -> Metadata:
        return Metadata(
            correlation_id=self.task_id, causation_id=self.task_id, actor=f"task:{self.task_name}"
        )

    def _owner(self, scope: str, collection: str) -> str:
        return {"app": "", "owner": self.user.owner_id, "user": self.user.id, "session": self.id}[
            scope
        ]

    async def reply(self, text: str) -> None:
        await self._post("reply", Reply(_text(text)))

    async def notify(self, text: str) -> None:
        await self._post("notify", Notification(_text(text)))

    async def show(self, block: Block) -> None:
        await self._post("show", BlockView(block.id, block.type, dict(block.payload)))

    async def show_task(self, handle_or_id: Any, message: str | None = None) -> None:
        task_id = str(getattr(handle_or_id, "task_id", handle_or_id))
        payload = {"task_id": task_id, "message": message, "status": "submitted"}
        await self.show(Block("task", payload, id=f"task:{task_id}"))

    async def show_image(
        self, source: str | bytes, alt: str = "", width: int | None = None
    ) -> None:
        if isinstance(source, bytes):
            source = "data:image/png;base64," + base64.b64encode(source).decode()
        await self.show(Block("image", {"source": str(source), "alt": alt, "width": width}))

    async def flush(self) -> None:
        """Everything a task shows is on record when its call returns: nothing to wait for."""

    def stream_reply(self) -> NoReturn:
        raise NotImplementedError("a task replies with session.reply(), not by streaming")

    async def _post(self, method: str, item: Effect) -> None:
        if self.session_id is None:
            raise NoSession(method, self.task_name)
        await self._poster.post(self.session_id, self._meta(), item)

    def __repr__(self) -> str:
        return f"TaskSession({self.id!r}, task={self.task_id!r})"


class TaskRun:
    """The attempt of a task running now: ``current_task()`` inside the task."""

    def __init__(
        self,
        task_id: str,
        name: str,
        attempt: int,
        report: Callable[[float | None, str], Awaitable[None]],
    ) -> None:
        self.id, self.name, self.attempt = task_id, name, attempt
        self._report = report

    async def progress(self, value: float | None = None, message: str = "") -> None:
        """Record progress (``value`` a fraction done, 0 to 1, or None; ``message`` what
        goes on) as ``task.progressed``; the task's card shows it."""
        await self._report(value, message)

    def __repr__(self) -> str:
        return f"TaskRun({self.id!r}, {self.name!r}, attempt={self.attempt})"


def current_task() -> TaskRun | None:
    """The task attempt running now, or None outside a task."""
    return cast("TaskRun | None", context.task.get())


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text (str), got {type(value).__name__}")
    return value
