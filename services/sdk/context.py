"""The session a handler runs for (or the request a data or endpoint handler answers),
reachable from any code it calls."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias, cast

from turnlog.services.app import context

if TYPE_CHECKING:
    from turnlog.services.sdk.request import RequestContext
    from turnlog.services.sdk.scheduled import ScheduledSession
    from turnlog.services.sdk.session import Session
    from turnlog.services.sdk.task_session import TaskSession

    Caller: TypeAlias = Session | ScheduledSession | TaskSession


def current_session() -> Caller | None:
    """The Session of the handler running now (a ScheduledSession in a scheduled
    handler: its owner's identity, no one to reply to; a TaskSession in a background
    task), or None outside any handler."""
    return cast("Caller | None", context.caller.get())


def current_request() -> RequestContext | None:
    """The RequestContext of the data or endpoint handler running now, or None."""
    return cast("RequestContext | None", context.request.get())


def current_caller() -> Caller | RequestContext | None:
    """Whom code running now acts for: the handler's session, else the request of the
    data or endpoint handler, else nobody (None)."""
    session = current_session()
    return session if session is not None else current_request()
