"""Subject and stream names, all under one configurable prefix."""

from __future__ import annotations

import base64
from dataclasses import dataclass


@dataclass(frozen=True)
class Subjects:
    """``turnlog.in.<app>.<session_id>``, ``turnlog.events.<app>.<stream_id>``,
    ``turnlog.live.<app>.<session_id>``, ``turnlog.dlq.<app>`` and streams
    ``TURNLOG_IN``, ``TURNLOG_EVENTS``, ``TURNLOG_DLQ`` (for prefix ``turnlog``)."""

    prefix: str = "turnlog"

    def __post_init__(self) -> None:
        if not self.prefix or any(c in self.prefix for c in " .*>"):
            raise ValueError(f"subject prefix must be one token, got {self.prefix!r}")

    @property
    def stream_in(self) -> str:
        return f"{self.prefix.upper()}_IN"

    @property
    def stream_events(self) -> str:
        return f"{self.prefix.upper()}_EVENTS"

    @property
    def stream_dlq(self) -> str:
        return f"{self.prefix.upper()}_DLQ"

    @property
    def bucket_files(self) -> str:
        """The object store bucket files are kept in."""
        return f"{self.prefix.upper()}_FILES"

    def inbound(self, app: str, session_id: str | None) -> str:
        return f"{self.prefix}.in.{app}.{session_id or 'new'}"

    def inbound_all(self, app: str = "*") -> str:
        return f"{self.prefix}.in.{app}.*"

    def events(self, app: str, stream_id: str) -> str:
        return f"{self.prefix}.events.{app}.{stream_id}"

    def events_all(self, app: str = "*") -> str:
        return f"{self.prefix}.events.{app}.*"

    def live(self, app: str, session_id: str) -> str:
        return f"{self.prefix}.live.{app}.{session_id}"

    def prompt(self, app: str, prompt_id: str) -> str:
        """Where an answer to a waiting prompt is sent (core NATS, request/reply): the
        runtime process holding the prompt replies."""
        return f"{self.prefix}.prompt.{app}.{prompt_id}"

    def dlq(self, app: str) -> str:
        return f"{self.prefix}.dlq.{app}"

    def integrations(self, user_id: str) -> str:
        """Where a change of ``user_id``'s integrations is announced (core NATS)."""
        return f"{self.prefix}.integrations.{user_token(user_id)}"

    def integrations_all(self) -> str:
        return f"{self.prefix}.integrations.*"

    @property
    def integration_commands(self) -> str:
        """Where integrations are connected and disconnected (core NATS request/reply)."""
        return f"{self.prefix}.control.integrations"


def user_token(user_id: str) -> str:
    """``user_id`` as one subject token: itself when it can be one, else ``~`` and its
    base64url (so ``a.b@example.com`` and ``~...`` ids never collide with another)."""
    plain = user_id.isprintable() and not any(c.isspace() or c in ".*>" for c in user_id)
    if user_id and plain and not user_id.startswith("~"):
        return user_id
    return "~" + base64.urlsafe_b64encode(user_id.encode()).decode().rstrip("=")
