"""The errors of a host that cannot run a session: it has ended, it is another app's, or
its turn is open elsewhere."""

from __future__ import annotations

from uuid import UUID

from turnlog.services.app.log.errors import StoreError


class SessionEnded(StoreError):
    """Raised when a message arrives for a session that has ended."""

    code = "session_ended"

    def __init__(self, session_id: UUID) -> None:
        self.session_id = session_id
        super().__init__(f"session {session_id} has ended")


class SessionOfAnotherApp(StoreError):
    """Raised when a session id given to one app belongs to a session of another."""

    code = "session_of_another_app"

    def __init__(self, session_id: UUID, owner: str, app: str) -> None:
        self.session_id, self.owner, self.app = session_id, owner, app
        super().__init__(f"session {session_id} belongs to app {owner!r}, not {app!r}")


class TurnOpenElsewhere(StoreError):
    """Raised by ``outside_turn`` when the session, read from the log, has a turn open
    that this process is not running (another worker is running it, or died in it)."""

    code = "turn_open_elsewhere"

    def __init__(self, session_id: UUID, message_id: str) -> None:
        self.session_id, self.message_id = session_id, message_id
        super().__init__(f"session {session_id} has a turn open elsewhere ({message_id!r})")
