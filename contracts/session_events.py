"""Payloads of a session's events: its turns, replies, data, effects, prompts, start and end."""

from __future__ import annotations

from typing import Any, ClassVar

from turnlog.contracts.event_payload import AttachmentRef, ChannelRef, EventPayload, UserRef


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


class TurnResumed(EventPayload, frozen=True, kw_only=True):
    """Recorded when a turn cut off by a crash, a kill or a lost lease is taken up again:
    its handler runs once more for the same message (``attempt`` 2, 3, ...), and what the
    earlier attempts put on record is handed back rather than done twice."""

    TYPE: ClassVar[str] = "session.turn_resumed"
    message_id: str
    attempt: int
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
    TurnResumed,
)
