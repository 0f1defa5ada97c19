"""The session a handler runs for (or the request a data or endpoint handler answers),
reachable from any code it calls."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from turnlog.services.sdk.request import RequestContext
    from turnlog.services.sdk.scheduled import ScheduledSession
    from turnlog.services.sdk.session import Session
    from turnlog.services.sdk.task_session import TaskSession

_current: ContextVar[Session | ScheduledSession | TaskSession | None] = ContextVar(
    "turnlog_current_session", default=None
)
_request: ContextVar[RequestContext | None] = ContextVar("turnlog_current_request", default=None)


def current_session() -> Session | ScheduledSession | TaskSession | None:
    """The Session of the handler running now (a ScheduledSession in a scheduled
    handler: its owner's identity, no one to reply to; a TaskSession in a background
    task), or None outside any handler."""
    return _current.get()


def current_request() -> RequestContext | None:
    """The RequestContext of the data or endpoint handler running now, or None."""
    return _request.get()


def current_caller() -> Session | ScheduledSession | TaskSession | RequestContext | None:
    """Whom code running now acts for: the handler's session, else the request of the
    data or endpoint handler, else nobody (None)."""
    session = _current.get()
    return session if session is not None else _request.get()
