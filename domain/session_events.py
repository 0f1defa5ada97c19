"""The events of a session, and how each changes the Session's state when applied."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsourcing.domain import Aggregate

from turnlog.contracts.events import AttachmentRef, ChannelRef, UserRef

if TYPE_CHECKING:
    from turnlog.domain.session import Session


class Started(Aggregate.Created):
    app: str
    user: UserRef
    channel: ChannelRef


class MessageReceived(Aggregate.Event):
    message_id: str
    text: str
    sender: str
    channel_type: str
    attachments: tuple[AttachmentRef, ...]
    sent_at: float | None

    def apply(self, session: Session) -> None:
        session._remember("user", self.text, self.message_id, self.timestamp)
        session.open_turn = self.message_id
        session.message_count += 1


class ReplySent(Aggregate.Event):
    text: str
    streamed: bool
    interrupted: bool

    def apply(self, session: Session) -> None:
        session._remember("app", self.text, None, self.timestamp)


class Notified(Aggregate.Event):
    text: str


class BlockShown(Aggregate.Event):
    block_id: str
    block_type: str
    payload: dict[str, Any]

    def apply(self, session: Session) -> None:
        session.blocks[self.block_id] = {"type": self.block_type, "payload": self.payload}


class DataSet(Aggregate.Event):
    key: str
    value: Any

    def apply(self, session: Session) -> None:
        session.data[self.key] = self.value


class DataDeleted(Aggregate.Event):
    key: str

    def apply(self, session: Session) -> None:
        session.data.pop(self.key, None)


class EffectRecorded(Aggregate.Event):
    name: str
    result: Any


class TurnCompleted(Aggregate.Event):
    message_id: str
    outcome: str
    duration_ms: float
    error_type: str | None
    error_message: str | None

    def apply(self, session: Session) -> None:
        session.open_turn = None


class TurnInterrupted(Aggregate.Event):
    message_id: str
    reason: str

    def apply(self, session: Session) -> None:
        session.open_turn = None


class TurnResumed(Aggregate.Event):
    message_id: str
    attempt: int
    reason: str


class InputRejected(Aggregate.Event):
    message_id: str | None
    reason: str
    detail: str


class Prompted(Aggregate.Event):
    prompt_id: str
    kind: str
    message: str
    accept: str
    integration: str | None
    timeout: float | None

    def apply(self, session: Session) -> None:
        session.open_prompt = self.prompt_id


class PromptReceived(Aggregate.Event):
    prompt_id: str
    file: AttachmentRef | None
    integration: str | None

    def apply(self, session: Session) -> None:
        session.open_prompt = None


class PromptDeclined(Aggregate.Event):
    prompt_id: str

    def apply(self, session: Session) -> None:
        session.open_prompt = None


class PromptTimedOut(Aggregate.Event):
    prompt_id: str

    def apply(self, session: Session) -> None:
        session.open_prompt = None


class PromptInterrupted(Aggregate.Event):
    prompt_id: str
    reason: str

    def apply(self, session: Session) -> None:
        session.open_prompt = None


class Ended(Aggregate.Event):
    reason: str

    def apply(self, session: Session) -> None:
        session.ended = True
