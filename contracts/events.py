"""Payloads of stored events, each with a stable type name and a schema version.

The type name (``session.reply_sent``) is what the log stores; it never changes when
code moves. A payload whose shape changes gets a new ``SCHEMA_VERSION`` and an upcaster
that lifts the old shape on read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import msgspec


class UserRef(msgspec.Struct, frozen=True, kw_only=True):
    """Who a session belongs to: the app user and, when they have one, their org."""

    id: str
    email: str | None = None
    org_id: str | None = None


class ChannelRef(msgspec.Struct, frozen=True, kw_only=True):
    """The transport a session arrived through (web chat, terminal, a bus producer, ...)."""

    type: str = "chat"
    name: str | None = None


class AttachmentRef(msgspec.Struct, frozen=True, kw_only=True):
    """A file attached to an inbound message, stored elsewhere and referenced by URL."""

    name: str
    content_type: str = "application/octet-stream"
    url: str = ""
    size: int = 0


class EventPayload(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every stored payload. Unknown fields are tolerated on read (forward compatible)."""

    TYPE: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int] = 1
    PERSONAL: ClassVar[tuple[str, ...]] = ()
    """Fields that hold a user's personal data (``outer.inner`` for a field of a nested
    struct): stored sealed with that user's key, so erasing the key erases them (see
    services/sealing.py)."""
    SECRET: ClassVar[tuple[str, ...]] = ()
    """Personal fields that are secrets (credentials): sealed like the others, and left
    closed by every reader but the one that asks for them (``{"_withheld": true}``)."""


class SessionStarted(EventPayload, frozen=True, kw_only=True):
    """Recorded when the first message of a new session arrives, before the enter hook runs."""

    TYPE: ClassVar[str] = "session.started"
    PERSONAL: ClassVar[tuple[str, ...]] = ("user.email",)
    app: str
    user: UserRef
    channel: ChannelRef


class MessageReceived(EventPayload, frozen=True, kw_only=True):
    """Recorded when an inbound message is accepted; it opens the turn that handles it."""

    TYPE: ClassVar[str] = "session.message_received"
    PERSONAL: ClassVar[tuple[str, ...]] = ("text",)
    message_id: str
    text: str
    sender: str = "user"
    channel_type: str = "chat"
    attachments: tuple[AttachmentRef, ...] = ()
    sent_at: float | None = None


class ReplySent(EventPayload, frozen=True, kw_only=True):
    """Recorded when the app replies; a streamed reply is recorded once, with its full text."""

    TYPE: ClassVar[str] = "session.reply_sent"
    PERSONAL: ClassVar[tuple[str, ...]] = ("text",)
    text: str
    streamed: bool = False
    interrupted: bool = False


class Notified(EventPayload, frozen=True, kw_only=True):
    """Recorded when the app sends a lightweight status notification."""

    TYPE: ClassVar[str] = "session.notified"
    PERSONAL: ClassVar[tuple[str, ...]] = ("text",)
    text: str


class BlockShown(EventPayload, frozen=True, kw_only=True):
    """Recorded when a structured block is rendered; the same block id again is an update."""

    TYPE: ClassVar[str] = "session.block_shown"
    block_id: str
    block_type: str
    payload: dict[str, Any]


class DataSet(EventPayload, frozen=True, kw_only=True):
    """Recorded when a top-level key of ``session.data`` gets a new value."""

    TYPE: ClassVar[str] = "session.data_set"
    PERSONAL: ClassVar[tuple[str, ...]] = ("value",)
    key: str
    value: Any


class DataDeleted(EventPayload, frozen=True, kw_only=True):
    """Recorded when a top-level key is removed from ``session.data``."""

    TYPE: ClassVar[str] = "session.data_deleted"
    key: str


class EffectRecorded(EventPayload, frozen=True, kw_only=True):
    """Recorded when a non-deterministic call's result is captured for deterministic replay."""

    TYPE: ClassVar[str] = "session.effect_recorded"
    PERSONAL: ClassVar[tuple[str, ...]] = ("result",)
    name: str
    result: Any


class TurnCompleted(EventPayload, frozen=True, kw_only=True):
    """Recorded when the handler of a turn returns (outcome ``ok``) or raises (``failed``)."""

    TYPE: ClassVar[str] = "session.turn_completed"
    message_id: str
    outcome: str
    duration_ms: float
    error_type: str | None = None
    error_message: str | None = None


class TurnInterrupted(EventPayload, frozen=True, kw_only=True):
    """Recorded when a turn that was started never completed (its process died)."""

    TYPE: ClassVar[str] = "session.turn_interrupted"
    message_id: str
    reason: str


class InputRejected(EventPayload, frozen=True, kw_only=True):
    """Recorded when an inbound message for this session could not be handled (it went
    to the dead-letter subject with the same reason)."""

    TYPE: ClassVar[str] = "session.input_rejected"
    message_id: str | None
    reason: str
    detail: str


PROMPT_KINDS = ("file", "integration")


class Prompted(EventPayload, frozen=True, kw_only=True):
    """Recorded when a handler blocks on the user: an upload (``prompt_file``) or
    connecting an integration (``prompt_integration``). The turn waits until the prompt is
    received, declined, timed out or interrupted."""

    TYPE: ClassVar[str] = "session.prompted"
    prompt_id: str
    kind: str
    message: str = ""
    accept: str = ""
    integration: str | None = None
    timeout: float | None = None


class PromptReceived(EventPayload, frozen=True, kw_only=True):
    """Recorded when the user answers a prompt: the file uploaded, or the integration
    connected (its credentials are never recorded here)."""

    TYPE: ClassVar[str] = "session.prompt_received"
    prompt_id: str
    file: AttachmentRef | None = None
    integration: str | None = None


class PromptDeclined(EventPayload, frozen=True, kw_only=True):
    """Recorded when the user declines an integration prompt."""

    TYPE: ClassVar[str] = "session.prompt_declined"
    prompt_id: str


class PromptTimedOut(EventPayload, frozen=True, kw_only=True):
    """Recorded when a prompt's timeout passes without an answer."""

    TYPE: ClassVar[str] = "session.prompt_timed_out"
    prompt_id: str


class PromptInterrupted(EventPayload, frozen=True, kw_only=True):
    """Recorded when a prompt was left waiting by a process that stopped."""

    TYPE: ClassVar[str] = "session.prompt_interrupted"
    prompt_id: str
    reason: str


class SessionEnded(EventPayload, frozen=True, kw_only=True):
    """Recorded when a session is closed explicitly or after its idle timeout."""

    TYPE: ClassVar[str] = "session.ended"
    reason: str


SCOPES = ("app", "owner", "user", "session")


class DocumentInserted(EventPayload, frozen=True, kw_only=True):
    """Recorded when a document is inserted into a collection. ``owner`` is what the scope
    is keyed by: ``""`` for scope ``app``, the owner id, the user id or the session id."""

    TYPE: ClassVar[str] = "document.inserted"
    PERSONAL: ClassVar[tuple[str, ...]] = ("document",)
    app: str
    collection: str
    scope: str
    owner: str
    doc_id: str
    document: dict[str, Any]


class DocumentUpdated(EventPayload, frozen=True, kw_only=True):
    """Recorded when a document changes: the update as asked (operator form) and the
    document as it is afterwards."""

    TYPE: ClassVar[str] = "document.updated"
    PERSONAL: ClassVar[tuple[str, ...]] = ("changes", "document")
    collection: str
    doc_id: str
    changes: dict[str, Any]
    document: dict[str, Any]


class DocumentDeleted(EventPayload, frozen=True, kw_only=True):
    """Recorded when a document is deleted; nothing more is recorded on its stream."""

    TYPE: ClassVar[str] = "document.deleted"
    collection: str
    doc_id: str


DOCUMENT_PAYLOADS: tuple[type[EventPayload], ...] = (
    DocumentInserted,
    DocumentUpdated,
    DocumentDeleted,
)

SESSION_PAYLOADS: tuple[type[EventPayload], ...] = (
    SessionStarted,
    MessageReceived,
    ReplySent,
    Notified,
    BlockShown,
    DataSet,
    DataDeleted,
    EffectRecorded,
    TurnCompleted,
    TurnInterrupted,
    InputRejected,
    SessionEnded,
    Prompted,
    PromptReceived,
    PromptDeclined,
    PromptTimedOut,
    PromptInterrupted,
)


class ScheduleFired(EventPayload, frozen=True, kw_only=True):
    """Recorded when a worker claims a tick of a schedule and starts its handler. Every
    worker serving the app tries; the stream's version check lets exactly one record it."""

    TYPE: ClassVar[str] = "schedule.fired"
    app: str
    schedule: str
    tick: datetime
    worker: str


class ScheduleCompleted(EventPayload, frozen=True, kw_only=True):
    """Recorded when a scheduled run ends: outcome ``ok``, ``failed`` (the handler raised)
    or ``cancelled`` (its worker was stopping and the run outlasted the grace period)."""

    TYPE: ClassVar[str] = "schedule.completed"
    tick: datetime
    outcome: str
    duration_ms: float
    error_type: str | None = None
    error_message: str | None = None


class ScheduleSkipped(EventPayload, frozen=True, kw_only=True):
    """Recorded when a tick comes while the run of an earlier tick is still going
    (reason ``overlap``): that tick does not run. Recorded once, by the worker that
    claims the tick."""

    TYPE: ClassVar[str] = "schedule.skipped"
    tick: datetime
    reason: str
    running_tick: datetime
    worker: str


class ScheduleInterrupted(EventPayload, frozen=True, kw_only=True):
    """Recorded when a run never completed because its worker is gone (the process died):
    by the worker that claims the next tick, just before it fires."""

    TYPE: ClassVar[str] = "schedule.interrupted"
    tick: datetime
    worker: str
    reason: str


SCHEDULE_PAYLOADS: tuple[type[EventPayload], ...] = (
    ScheduleFired,
    ScheduleCompleted,
    ScheduleSkipped,
    ScheduleInterrupted,
)


class UserErased(EventPayload, frozen=True, kw_only=True):
    """Recorded when a user's personal data is erased (``turnlog erase-user``): the keys
    named by ``key_generations`` were destroyed in the same transaction, so every field
    sealed with them now reads as erased. ``apps``: the apps that held the user's data
    (empty in erasures recorded before it existed); the relay publishes the event to
    each of them as the erasure notice for their bus consumers."""

    TYPE: ClassVar[str] = "user.erased"
    user_id: str
    reason: str
    key_generations: tuple[int, ...]
    apps: tuple[str, ...] = ()


USER_PAYLOADS: tuple[type[EventPayload], ...] = (UserErased,)


class IntegrationConnected(EventPayload, frozen=True, kw_only=True):
    """Recorded when an integration is connected for a user, or connected again with new
    credentials, on the user's own stream (``integrations:<uuid5 of the id>``). The
    credentials are sealed with the user's key and only the integrations service opens
    them: every other reader sees ``{"_withheld": true}``, ``{"_erased": true}`` once
    the user is erased."""

    TYPE: ClassVar[str] = "integration.connected"
    PERSONAL: ClassVar[tuple[str, ...]] = ("credentials",)
    SECRET: ClassVar[tuple[str, ...]] = ("credentials",)
    user_id: str
    type: str
    credentials: dict[str, Any]
    scopes: tuple[str, ...] = ()


class IntegrationDisconnected(EventPayload, frozen=True, kw_only=True):
    """Recorded when a connected integration is disconnected: its credentials are no
    longer handed to the user's handlers."""

    TYPE: ClassVar[str] = "integration.disconnected"
    user_id: str
    type: str
    reason: str = ""


INTEGRATION_PAYLOADS: tuple[type[EventPayload], ...] = (
    IntegrationConnected,
    IntegrationDisconnected,
)


class TaskSubmitted(EventPayload, frozen=True, kw_only=True):
    """Recorded when a background task is submitted (stream ``task:<task_id>``), before
    it is queued: its app and name, its plain-JSON arguments, the session it was submitted
    from (its replies and card go there) and that session's user, whose key seals the
    arguments. ``timeout`` 0: none; ``retries``: how often a failure is retried."""

    TYPE: ClassVar[str] = "task.submitted"
    PERSONAL: ClassVar[tuple[str, ...]] = ("kwargs", "user.email")
    app: str
    name: str
    kwargs: dict[str, Any]
    session_id: str | None = None
    user: UserRef | None = None
    retries: int = 0
    timeout: float = 0.0


class TaskStarted(EventPayload, frozen=True, kw_only=True):
    """Recorded when a worker starts an attempt of a task (1 for the first run)."""

    TYPE: ClassVar[str] = "task.started"
    attempt: int
    worker: str


class TaskProgressed(EventPayload, frozen=True, kw_only=True):
    """Recorded when a running task reports progress: a fraction done (0 to 1, or null)
    and a message."""

    TYPE: ClassVar[str] = "task.progressed"
    PERSONAL: ClassVar[tuple[str, ...]] = ("message",)
    progress: float | None = None
    message: str = ""


class TaskCompleted(EventPayload, frozen=True, kw_only=True):
    """Recorded when an attempt returns: the task's plain-JSON result. The task is done."""

    TYPE: ClassVar[str] = "task.completed"
    PERSONAL: ClassVar[tuple[str, ...]] = ("result",)
    result: Any = None


class TaskFailed(EventPayload, frozen=True, kw_only=True):
    """Recorded when an attempt raises or runs out of time (``TimeoutError``), or its
    worker stopped (``WorkerLost``); ``will_retry``: another attempt follows."""

    TYPE: ClassVar[str] = "task.failed"
    attempt: int
    error_type: str
    error_message: str
    will_retry: bool


class TaskCancelled(EventPayload, frozen=True, kw_only=True):
    """Recorded when a task is cancelled before it finished; a running attempt is
    stopped, and nothing more is recorded on the task."""

    TYPE: ClassVar[str] = "task.cancelled"
    reason: str = ""


TASK_PAYLOADS: tuple[type[EventPayload], ...] = (
    TaskSubmitted,
    TaskStarted,
    TaskProgressed,
    TaskCompleted,
    TaskFailed,
    TaskCancelled,
)

ALL_PAYLOADS: tuple[type[EventPayload], ...] = (
    SESSION_PAYLOADS
    + DOCUMENT_PAYLOADS
    + USER_PAYLOADS
    + SCHEDULE_PAYLOADS
    + INTEGRATION_PAYLOADS
    + TASK_PAYLOADS
)
