"""Errors raised by the event store."""

from __future__ import annotations

from collections.abc import Callable

from turnlog.domain.errors import TurnlogError

PassingCheck = Callable[[BaseException], bool]
_passing: list[PassingCheck] = []


class StoreError(TurnlogError):
    """Base of every error the event store raises; raised itself when a command cannot
    be done on the log as it is (no events for a session, no such version to replay, an
    unknown projection to rebuild, a task that kept changing while it was cancelled)."""

    code = "store_error"


class Unavailable(StoreError):
    """Raised when PostgreSQL or NATS cannot be reached as turnlog connects to it (a
    StoreError, as such failures always were)."""

    code = "unavailable"


class ConcurrencyConflict(StoreError):
    """Raised when an append names an expected version that is not the stream's version."""

    code = "concurrency_conflict"

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream_id}: expected version {expected}, but it is at version {actual}"
        )


class DuplicateMessage(StoreError):
    """Raised when an append records a message id that was already received: that message
    has had its turn (or had it interrupted) and must not run again."""

    code = "duplicate_message"

    def __init__(self, detail: str) -> None:
        super().__init__(f"message already received ({detail})")


class UnknownEventType(StoreError):
    """Raised when a stored event's type name has no registered payload type."""

    code = "unknown_event_type"

    def __init__(self, type_name: str, known: list[str]) -> None:
        self.type_name = type_name
        super().__init__(
            f"unknown event type {type_name!r}; known types: {', '.join(sorted(known))}"
        )


class UnsupportedSchemaVersion(StoreError):
    """Raised when a stored payload's schema version cannot be read by this code: it is
    newer than the code knows, or no upcaster lifts it."""

    code = "unsupported_schema_version"

    def __init__(self, type_name: str, found: int, current: int, reason: str) -> None:
        self.type_name = type_name
        self.found = found
        self.current = current
        super().__init__(
            f"{type_name} schema version {found} (this code reads {current}): {reason}"
        )


def passing_when(check: PassingCheck) -> None:
    """Count the errors ``check`` accepts as transient too: an adapter's test of its own
    driver's errors (PostgreSQL's is registered when ``services.adapters.postgres`` is
    imported, as it is wherever asyncpg can raise)."""
    if check not in _passing:
        _passing.append(check)


def transient(error: BaseException) -> bool:
    """Whether ``error`` says the database (or the way to it) is away for now, rather
    than that the request itself cannot be done: what is worth doing again later."""
    if isinstance(error, OSError):  # refused, reset, timed out (TimeoutError is one)
        return True
    return any(check(error) for check in _passing)
