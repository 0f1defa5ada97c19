"""The session a handler runs for, reachable from any code it calls."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from turnlog.services.sdk.session import Session

_current: ContextVar[Session | None] = ContextVar("turnlog_current_session", default=None)


def current_session() -> Session | None:
    """The Session of the handler running now, or None outside any handler."""
    return _current.get()
