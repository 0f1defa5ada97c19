"""The Session aggregate: one conversation, its turns, its data and what the user saw.

Commands check the rules first and raise a DomainError; only then do they trigger the
event whose ``apply`` changes state, so replaying recorded events never re-checks rules.
Every command takes ``at``, the time to record: the model never reads a clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from turnlog.contracts.events import PROMPT_KINDS, AttachmentRef, ChannelRef, UserRef
from turnlog.domain import session_events as events
from turnlog.domain import values
from turnlog.domain.errors import (
    InvalidValue,
    NoPromptWaiting,
    NoTurnInProgress,
    PromptWaiting,
    SessionClosed,
    TurnInProgress,
    UnknownDataKey,
)

HISTORY_LIMIT = 50
OUTCOMES = ("ok", "failed")


class Session(Aggregate):
    """A conversation between one user and one app, recorded event by event."""

    # Its events, defined in session_events. Like events defined in the class body, each
    # is redefined as the aggregate's own (Session.Started, ...) when the class is made.
    Started = events.Started
    MessageReceived = events.MessageReceived
    ReplySent = events.ReplySent
    Notified = events.Notified
    BlockShown = events.BlockShown
    DataSet = events.DataSet
    DataDeleted = events.DataDeleted
    EffectRecorded = events.EffectRecorded
    TurnCompleted = events.TurnCompleted
    TurnInterrupted = events.TurnInterrupted
    TurnResumed = events.TurnResumed
    InputRejected = events.InputRejected
    Prompted = events.Prompted
    PromptReceived = events.PromptReceived
    PromptDeclined = events.PromptDeclined
    PromptTimedOut = events.PromptTimedOut
    PromptInterrupted = events.PromptInterrupted
    Ended = events.Ended

    def __init__(self, app: str, user: UserRef, channel: ChannelRef) -> None:
        self.app = app
        self.user = user
        self.channel = channel
        self.history: list[dict[str, Any]] = []
        self.message_count = 0
        self.data: dict[str, Any] = {}
        self.blocks: dict[str, dict[str, Any]] = {}
        self.open_turn: str | None = None
        self.open_prompt: str | None = None
        self.ended = False

    # -- commands ---------------------------------------------------------------------

    @classmethod
    def start(
        cls, session_id: UUID, *, app: str, user: UserRef, channel: ChannelRef, at: datetime
    ) -> Session:
        values.name(app, "app name")
        values.name(user.id, "user id")
        values.optional_text(user.email, "user email")
        values.optional_text(user.org_id, "user org_id")
        values.name(channel.type, "channel type")
        values.optional_text(channel.name, "channel name")
        return cls._create(
            cls.Started, id=session_id, app=app, user=user, channel=channel, timestamp=at
        )

    def receive_message(
        self,
        *,
        message_id: str,
        text: str,
        at: datetime,
        sender: str = "user",
        channel_type: str = "chat",
        attachments: tuple[AttachmentRef, ...] = (),
        sent_at: float | None = None,
    ) -> None:
        self._check_open()
        if self.open_turn is not None:
            raise TurnInProgress(self.open_turn)
        self.trigger_event(
            self.MessageReceived,
            timestamp=at,
            message_id=values.name(message_id, "message id"),
            text=values.bounded_text(text, "message text"),
            sender=sender,
            channel_type=values.name(channel_type, "channel type"),
            attachments=_attachments(attachments),
            sent_at=sent_at,
        )

    def reply(
        self, text: str, *, at: datetime, streamed: bool = False, interrupted: bool = False
    ) -> None:
        self._check_open()
        text = values.bounded_text(text, "reply text")
        self.trigger_event(
            self.ReplySent, timestamp=at, text=text, streamed=streamed, interrupted=interrupted
        )

    def notify(self, text: str, *, at: datetime) -> None:
        self._check_open()
        self.trigger_event(
            self.Notified, timestamp=at, text=values.bounded_text(text, "notification text")
        )

    def show_block(
        self, block_id: str, block_type: str, payload: dict[str, Any], *, at: datetime
    ) -> None:
        self._check_open()
        if not isinstance(payload, dict):
            raise InvalidValue(f"block payload must be a dict, not {type(payload).__name__}")
        self.trigger_event(
            self.BlockShown,
            timestamp=at,
            block_id=values.name(block_id, "block id"),
            block_type=values.name(block_type, "block type"),
            payload=values.bounded_json(payload, "block payload"),
        )

    def set_data(self, key: str, value: Any, *, at: datetime) -> None:
        self._check_open()
        key = values.name(key, "session.data key")
        plain = values.bounded_json(value, f"session.data[{key!r}]")
        self.trigger_event(self.DataSet, timestamp=at, key=key, value=plain)

    def delete_data(self, key: str, *, at: datetime) -> None:
        self._check_open()
        if key not in self.data:
            raise UnknownDataKey(key)
        self.trigger_event(self.DataDeleted, timestamp=at, key=key)

    def record_effect(self, name: str, result: Any, *, at: datetime) -> None:
        self._check_open()
        name = values.name(name, "effect name")
        plain = values.bounded_json(result, f"effect {name!r} result")
        self.trigger_event(self.EffectRecorded, timestamp=at, name=name, result=plain)

    def complete_turn(
        self,
        *,
        outcome: str,
        duration_ms: float,
        at: datetime,
        error_type: str | None = None,
        error_message: str | None = None,
    ) -> None:
        self._check_open()
        if self.open_turn is None:
            raise NoTurnInProgress()
        if outcome not in OUTCOMES:
            raise InvalidValue(f"turn outcome must be one of {OUTCOMES}, got {outcome!r}")
        self.trigger_event(
            self.TurnCompleted,
            timestamp=at,
            message_id=self.open_turn,
            outcome=outcome,
            duration_ms=float(duration_ms),
            error_type=None if error_type is None else values.error_text(error_type, 256),
            error_message=(
                None
                if error_message is None
                else values.error_text(error_message, values.MAX_TEXT_CHARS)
            ),
        )

    def prompt(
        self,
        prompt_id: str,
        kind: str,
        *,
        at: datetime,
        message: str = "",
        accept: str = "",
        integration: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """Block the turn on the user: one prompt at a time, only inside a turn."""
        self._check_open()
        if self.open_turn is None:
            raise NoTurnInProgress()
        if self.open_prompt is not None:
            raise PromptWaiting(self.open_prompt)
        if kind not in PROMPT_KINDS:
            raise InvalidValue(f"prompt kind must be one of {PROMPT_KINDS}, got {kind!r}")
        if kind == "integration":
            values.name(integration or "", "integration type")
        self.trigger_event(
            self.Prompted,
            timestamp=at,
            prompt_id=values.name(prompt_id, "prompt id"),
            kind=kind,
            message=values.bounded_text(message, "prompt message"),
            accept=values.bounded_text(accept, "accepted file types"),
            integration=integration,
            timeout=timeout,
        )

    def receive_prompt(
        self,
        prompt_id: str,
        *,
        at: datetime,
        file: AttachmentRef | None = None,
        integration: str | None = None,
    ) -> None:
        self._check_prompt(prompt_id)
        self.trigger_event(
            self.PromptReceived,
            timestamp=at,
            prompt_id=prompt_id,
            file=file,
            integration=integration,
        )

    def decline_prompt(self, prompt_id: str, *, at: datetime) -> None:
        self._check_prompt(prompt_id)
        self.trigger_event(self.PromptDeclined, timestamp=at, prompt_id=prompt_id)

    def time_out_prompt(self, prompt_id: str, *, at: datetime) -> None:
        self._check_prompt(prompt_id)
        self.trigger_event(self.PromptTimedOut, timestamp=at, prompt_id=prompt_id)

    def interrupt_prompt(self, reason: str, *, at: datetime) -> None:
        self._check_open()
        if self.open_prompt is None:
            raise NoPromptWaiting(None)
        self.trigger_event(
            self.PromptInterrupted,
            timestamp=at,
            prompt_id=self.open_prompt,
            reason=values.error_text(reason),
        )

    def interrupt_turn(self, reason: str, *, at: datetime) -> None:
        self._check_open()
        if self.open_turn is None:
            raise NoTurnInProgress()
        self.trigger_event(
            self.TurnInterrupted,
            timestamp=at,
            message_id=self.open_turn,
            reason=values.error_text(reason),
        )

    def resume_turn(self, attempt: int, reason: str, *, at: datetime) -> None:
        """Take up the open turn again, cut off before it completed: ``attempt`` counts
        from 2 (the first attempt is the one that received the message)."""
        self._check_open()
        if self.open_turn is None:
            raise NoTurnInProgress()
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 2:
            raise InvalidValue(f"a resumed turn's attempt must be 2 or more, got {attempt!r}")
        self.trigger_event(
            self.TurnResumed,
            timestamp=at,
            message_id=self.open_turn,
            attempt=attempt,
            reason=values.error_text(reason),
        )

    def reject_input(
        self, message_id: str | None, reason: str, detail: str, *, at: datetime
    ) -> None:
        self._check_open()
        self.trigger_event(
            self.InputRejected,
            timestamp=at,
            message_id=None if message_id is None else values.error_text(message_id, 256),
            reason=values.name(reason, "rejection reason"),
            detail=values.error_text(detail),
        )

    def end(self, reason: str, *, at: datetime) -> None:
        self._check_open()
        if self.open_turn is not None:
            raise TurnInProgress(self.open_turn)
        self.trigger_event(self.Ended, timestamp=at, reason=values.name(reason, "end reason"))

    # -- queries ------------------------------------------------------------------------

    def recent_messages(self) -> list[dict[str, Any]]:
        """Up to HISTORY_LIMIT messages before the current one, oldest first (without
        what a cut-off attempt of the current turn already replied)."""
        past = self.history
        if self.open_turn is not None:
            current = [
                i
                for i, m in enumerate(past)
                if m["sender"] == "user" and m["message_id"] == self.open_turn
            ]
            past = past[: current[-1]] if current else past[:-1]
        return past[-HISTORY_LIMIT:]

    # -- helpers ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.ended:
            raise SessionClosed(self.id)

    def _check_prompt(self, prompt_id: str) -> None:
        self._check_open()
        if self.open_prompt != prompt_id:
            raise NoPromptWaiting(prompt_id)

    def _remember(self, sender: str, text: str, message_id: str | None, at: datetime) -> None:
        self.history.append(
            {"sender": sender, "text": text, "message_id": message_id, "at": at.timestamp()}
        )
        if len(self.history) > HISTORY_LIMIT + 1:
            del self.history[0]


def _attachments(attachments: tuple[AttachmentRef, ...]) -> tuple[AttachmentRef, ...]:
    """``attachments`` once their names, types and URLs are storable text."""
    for i, a in enumerate(attachments):
        values.bounded_text(a.name, f"attachment {i} name", values.MAX_NAME_CHARS)
        values.bounded_text(a.content_type, f"attachment {i} content_type", values.MAX_NAME_CHARS)
        values.bounded_text(a.url, f"attachment {i} url", 8192)
    return tuple(attachments)
