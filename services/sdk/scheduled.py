"""``ScheduledSession``: what ``current_session()`` is inside a scheduled handler."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, NoReturn

from turnlog.domain.errors import TurnlogError
from turnlog.services.app.context import Runtime
from turnlog.services.app.mapping import Metadata
from turnlog.services.sdk.collections import Collection, HasCollections
from turnlog.services.sdk.types import Message, SessionChannel, UserInfo


class NoReplyTarget(TurnlogError, RuntimeError):
    """Raised when a scheduled handler replies, notifies, streams or shows something: a
    scheduled run has no one to reply to."""

    code = "no_reply_target"

    def __init__(self, method: str, schedule: str) -> None:
        self.method, self.schedule = method, schedule
        super().__init__(
            f"a scheduled run has no one to reply to: session.{method}() is not available"
            f" in schedule {schedule!r}"
        )


class ScheduledSession(HasCollections):
    """A synthetic session for one run of a schedule: the schedule's owner as ``user``,
    ``integrations``, collections (``db``) scoped to that owner, and no reply target.

    ``id`` is the schedule's stream id, so a ``session``-scoped collection holds what
    the schedule keeps from run to run; ``data`` is a fresh dict for each run and is not
    recorded; ``history`` is empty. ``tick`` is the moment (UTC) this run is for.
    """

    def __init__(
        self,
        *,
        stream_id: str,
        schedule: str,
        tick: datetime,
        user: UserInfo,
        meta: Metadata,
        collections: dict[str, Collection] | None = None,
        integrations: Mapping[str, Any] | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        self._runtime = runtime or Runtime(meta.actor.removeprefix("app:") if meta.actor else "")
        self.id = stream_id
        self.schedule = schedule
        self.tick = tick
        self.user = user
        self.channel = SessionChannel(type="schedule", name=schedule)
        self.history: list[Message] = []
        self.data: dict[str, Any] = {}
        self.integrations: Mapping[str, Any] = MappingProxyType(dict(integrations or {}))
        self._collections = collections or {}
        self._run_meta = meta

    def _meta(self) -> Metadata:
        """Carried on the document events this run writes: its correlation id."""
        return self._run_meta

    def _owner(self, scope: str, collection: str) -> str:
        """Whose documents of a collection of ``scope`` this run reads and writes: the
        owner's, or (scope ``session``) the schedule's own."""
        return {
            "app": "",
            "owner": self.user.owner_id,
            "user": self.user.id,
            "session": self.id,
        }[scope]

    def chat_messages(
        self, current: Message | None = None, cls: Callable[..., Any] | None = None
    ) -> list[Any]:
        """``current`` alone as a user message (a scheduled run has no history)."""
        if current is None:
            return []
        if cls is not None:
            return [cls(role="user", content=current.text)]
        return [{"role": "user", "content": current.text}]

    # -- nothing to answer --------------------------------------------------------------

    def reply(self, text: str) -> NoReturn:
        self._refuse("reply")

    def notify(self, text: str) -> NoReturn:
        self._refuse("notify")

    def stream(self, chunks: Any) -> NoReturn:
        self._refuse("stream")

    def stream_reply(self) -> NoReturn:
        self._refuse("stream_reply")

    def stream_reply_from(self, stream: Any) -> NoReturn:
        self._refuse("stream_reply_from")

    def show(self, block: Any) -> NoReturn:
        self._refuse("show")

    def show_task(self, handle_or_id: Any, message: str | None = None) -> NoReturn:
        self._refuse("show_task")

    def show_integration(self, type: str, reason: str = "") -> NoReturn:
        self._refuse("show_integration")

    def show_image(self, source: Any, alt: str = "", width: int | None = None) -> NoReturn:
        self._refuse("show_image")

    def prompt_file(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("prompt_file")

    def prompt_integration(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("prompt_integration")

    def _refuse(self, method: str) -> NoReturn:
        raise NoReplyTarget(method, self.schedule)

    def __repr__(self) -> str:
        return f"ScheduledSession({self.id!r}, tick={self.tick.isoformat()})"
