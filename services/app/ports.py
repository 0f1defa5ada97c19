"""What the application needs of the world, as Protocols: the event log, the users' keys,
claims and leases, files, the task queue, notices, the projection queries, and the clock.
PostgreSQL, NATS and
memory (for tests and ``turnlog.testing``) implement them in ``services/adapters``; the
composition root (``services/bootstrap``) picks which."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from turnlog.contracts import query as q
from turnlog.services.app.access import Principal
from turnlog.services.app.log.records import NewEvent, RecordedEvent, Snapshot

if TYPE_CHECKING:
    from turnlog.services.app.sealing import KeyRing

T = TypeVar("T")

KeyId = tuple[str, int]
"""A user's key: (user id, generation)."""


class EventLog(Protocol):
    """The append-only log of every stream (a session, a document, a task, ...), with
    the ring of the keys its personal fields are sealed with (one per log, so one cache
    of keys per process)."""

    keyring: KeyRing

    async def append(
        self,
        stream_id: str,
        expected_version: int,
        events: Sequence[NewEvent],
        *,
        connection: Any = None,
    ) -> list[RecordedEvent]:
        """Append after ``expected_version`` atomically; ConcurrencyConflict when the
        stream is elsewhere, DuplicateMessage for a message id already received.
        ``connection``: a transaction of the adapter's own to append in."""
        ...

    async def read_stream(
        self, stream_id: str, after_version: int = 0, to_version: int | None = None
    ) -> list[RecordedEvent]: ...

    async def load_snapshot(self, stream_id: str) -> Snapshot | None: ...

    async def save_snapshot(self, snapshot: Snapshot) -> None: ...

    async def last_position(self) -> int: ...

    async def patiently(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, made again while the log's server is away (a restart)."""
        ...

    def announce(self) -> None:
        """Wake followers: something was appended (in a caller's own transaction)."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Any]:
        """A transaction of the log's own, for appends (``connection=``) and key checks
        (``KeyRing.seal(holding=)``) that must commit together; announce() after."""
        ...


class KeyStore(Protocol):
    """The users' sealing keys (32 random bytes each, by generation); an erased key is
    kept as None, so what it sealed reads as erased."""

    async def latest(self, user_id: str) -> tuple[int, bytes | None] | None: ...

    async def create(self, user_id: str, generation: int, key: bytes) -> None:
        """Keep a new key (nothing if that generation exists already)."""
        ...

    async def find(self, wanted: Sequence[KeyId]) -> list[tuple[str, int, bytes | None]]: ...

    async def live(self, holding: Any, user_id: str, generation: int) -> bool:
        """Whether that key is not destroyed, checked in ``holding``'s transaction so
        that an erasure waits for it."""
        ...

    async def destroy(self, holding: Any, user_id: str) -> list[int]:
        """Destroy the user's live keys in ``holding``'s transaction; their generations."""
        ...


class Claim(Protocol):
    """Something held by this process alone (an app's messages, a schedule's run) until
    released, or until the process is gone."""

    async def alive(self) -> bool:
        """Whether it is still held (False once what held it is gone: a restart)."""
        ...

    async def release(self) -> None: ...


class Claims(Protocol):
    async def try_claim(self, key: tuple[int, int]) -> Claim | None:
        """The claim on ``key``, or None while someone else holds it."""
        ...

    async def held(self, space: int) -> set[int]:
        """The ``n`` of every key ``(space, n)`` held now, by any process."""
        ...


class Files(Protocol):
    """The file store: files users send, referenced from the log by URL."""

    def ours(self, url: str) -> bool:
        """Whether ``url`` names a file of this store."""
        ...

    async def download(self, url: str, path: Path) -> Path:
        """Save the file at ``path`` (written whole, under a temporary name first)."""
        ...


class TaskQueue(Protocol):
    """Where submitted tasks wait for a worker, and cancellations are announced."""

    async def enqueue(self, app: str, name: str, task_id: str) -> None: ...

    async def announce_cancel(self, app: str, task_id: str, reason: str) -> None: ...


class Notices(Protocol):
    """Announcements to other processes (no payload of a user's beyond ids)."""

    async def integration_changed(self, user_id: str, type: str, connected: bool) -> None: ...


@runtime_checkable  # Litestar checks the dependencies it hands to route handlers
class Queries(Protocol):
    """The projection queries behind the HTTP API and NATS request/reply, with what each
    key may see decided inside; a query the caller may not make, or whose input cannot be
    used, raises QueryFailure."""

    async def list_sessions(
        self,
        who: Principal,
        *,
        app: str | None = None,
        user: str | None = None,
        channel: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> q.SessionPage: ...

    async def get_session(self, who: Principal, session_id: str) -> q.SessionSummary: ...

    async def history(
        self, who: Principal, session_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> q.HistoryPage: ...

    async def data(self, who: Principal, session_id: str) -> q.SessionData: ...

    async def blocks(self, who: Principal, session_id: str) -> q.BlockList: ...

    async def events(
        self,
        who: Principal,
        session_id: str,
        *,
        from_version: int = 1,
        limit: int = 100,
        cursor: str | None = None,
    ) -> q.EventPage: ...

    async def state(
        self,
        who: Principal,
        session_id: str,
        *,
        as_of_version: int | None = None,
        at: str | None = None,
    ) -> q.SessionState: ...

    async def find(self, who: Principal, request: q.FindRequest) -> q.DocumentPage: ...

    async def projection_status(self, who: Principal) -> q.ProjectionStatusList: ...

    def refuses(self, error: BaseException) -> bool:
        """Whether ``error`` is the store refusing a value the caller gave (past the
        queries' own checks): a 400, not a failure of the service."""
        ...


class NoNotices:
    """Nobody else to tell (one process, or tests)."""

    async def integration_changed(self, user_id: str, type: str, connected: bool) -> None:
        return None


class Metrics(Protocol):
    """What happens in a process, counted for its operators (``/metrics``)."""

    def turn_ended(self, app: str, outcome: str, seconds: float) -> None:
        """A turn of ``app`` ended (``ok``, ``failed``, ...) after ``seconds``, from its
        message's arrival to its outcome on record."""
        ...

    def dead_lettered(self, app: str, reason: str) -> None:
        """An inbound message for ``app`` went to the dead-letter stream."""
        ...

    def turn_resumed(self, app: str) -> None:
        """A turn of ``app`` cut off by a crash was taken up again and ran to its end."""
        ...

    def partitions_owned(self, app: str, count: int) -> None:
        """This process now owns ``count`` of ``app``'s partitions."""
        ...


class NoMetrics:
    """Nobody counts (tests, one-off commands)."""

    def turn_ended(self, app: str, outcome: str, seconds: float) -> None:
        return None

    def dead_lettered(self, app: str, reason: str) -> None:
        return None

    def turn_resumed(self, app: str) -> None:
        return None

    def partitions_owned(self, app: str, count: int) -> None:
        return None


Clock = Callable[[], datetime]
"""Now, as an aware UTC datetime: the model records what its callers pass it."""


def system_clock() -> datetime:
    return datetime.now(UTC)
