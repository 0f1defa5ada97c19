"""One turn: record the message, run the handler, record data changes and the outcome."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
import structlog

from turnlog.contracts import events as wire
from turnlog.contracts.events import AttachmentRef
from turnlog.domain.errors import DomainError
from turnlog.domain.session import Session as SessionAggregate
from turnlog.services.app import context
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.ports import Files
from turnlog.services.app.sessions.live import LiveSession
from turnlog.services.app.sessions.outbound import Reply
from turnlog.services.app.sessions.resume import CutOff
from turnlog.services.app.values import Attachment, Message, SessionChannel, UserInfo

log = structlog.get_logger("turnlog.runtime")
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class Inbound:
    """A user message for the runtime; ``session_id`` None starts a new session."""

    message_id: str
    text: str
    user: UserInfo
    channel: SessionChannel = field(default_factory=SessionChannel)
    session_id: UUID | None = None
    attachments: tuple[Attachment, ...] = ()
    sent_at: float | None = None

    def with_files(self, store: Files | None) -> Inbound:
        """This message with its attachments fetched from ``store``."""
        if store is None or not self.attachments:
            return self
        return replace(self, attachments=tuple(replace(a, store=store) for a in self.attachments))


def recorded_inbound(message: wire.MessageReceived, session: SessionAggregate) -> Inbound:
    """A recorded message of ``session`` as the runtime handed it to the handler (to run
    its turn again: resumed, or re-run)."""
    return Inbound(
        message_id=message.message_id,
        text=message.text,
        user=UserInfo(id=session.user.id, email=session.user.email, org_id=session.user.org_id),
        channel=SessionChannel(type=message.channel_type, name=session.channel.name),
        session_id=session.id,
        attachments=tuple(
            Attachment(name=a.name, content_type=a.content_type, url=a.url, size=a.size)
            for a in message.attachments
        ),
        sent_at=message.sent_at,
    )


@dataclass(frozen=True)
class TurnResult:
    session_id: UUID
    message_id: str
    outcome: str
    replies: tuple[str, ...]
    error_type: str | None = None
    error_message: str | None = None
    attempt: int = 1  # 2 and on: a cut-off turn taken up again

    @property
    def reply(self) -> str:
        return "\n\n".join(self.replies)


class Slot:
    """A live session with its handler-facing Session (the app's facade, with ``data``)
    and the last recorded data."""

    def __init__(self, live: LiveSession, session: Any) -> None:
        self.live = live
        self.session = session
        self.recorded: dict[str, bytes] = {k: _encode(v) for k, v in live.aggregate.data.items()}
        self.cut_off: CutOff | None = None  # the open turn it was loaded with
        self.resumed: TurnResult | None = None  # that turn, taken up on loading


def error_reply(error: BaseException) -> str:
    return f"Sorry, something went wrong while handling your message ({type(error).__name__})."


async def call_hook(fn: Callable[..., Any], *args: Any) -> None:
    """Call a sync or async hook with as many of ``args`` as it accepts."""
    params = inspect.signature(fn).parameters.values()
    takes = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
    varargs = any(p.kind is p.VAR_POSITIONAL for p in params)
    result = fn(*(args if varargs else args[:takes]))
    if inspect.isawaitable(result):
        await result


async def run_turn(
    app_name: str,
    handler: Callable[..., Any],
    slot: Slot,
    inbound: Inbound,
    received_at: datetime | None = None,
    *,
    resumed: bool = False,
) -> TurnResult:
    """``received_at`` is now, or the recorded time when the turn is re-run or
    ``resumed`` (its message is on record already)."""
    live = slot.live
    received_at = received_at or live.clock()
    if not resumed:
        await _record_message(live, inbound, received_at)
    live.meta = Metadata(
        correlation_id=inbound.message_id, causation_id=inbound.message_id, actor=f"app:{app_name}"
    )
    live.turn_replies = []
    message = Message(
        text=inbound.text,
        sender="user",
        channel_type=inbound.channel.type,
        timestamp=inbound.sent_at or received_at.timestamp(),
        attachments=inbound.attachments,
        id=inbound.message_id,
    )
    started = time.perf_counter()
    error = await _run_handler(handler, slot, message)
    error = _record_data(slot) or error
    return await _record_outcome(live, inbound, error, started)


async def _record_message(live: LiveSession, inbound: Inbound, received_at: datetime) -> None:
    """Record the message, which opens the turn, before the handler does anything."""
    live.meta = Metadata(
        correlation_id=inbound.message_id,
        causation_id=inbound.message_id,
        actor=f"user:{inbound.user.id}",
    )
    live.aggregate.receive_message(
        message_id=inbound.message_id,
        text=inbound.text,
        at=received_at,
        channel_type=inbound.channel.type,
        sent_at=inbound.sent_at,
        attachments=tuple(
            AttachmentRef(name=a.name, content_type=a.content_type, url=a.url, size=a.size)
            for a in inbound.attachments
        ),
    )
    await live.settle()  # the turn is on record before the handler does anything


async def _record_outcome(
    live: LiveSession, inbound: Inbound, error: BaseException | None, started: float
) -> TurnResult:
    """Record how the turn ended (with an apology for a reply when ``error``), which
    closes it; ``started``: when its handler started (``time.perf_counter()``)."""
    agg = live.aggregate
    if error is not None:
        log.error(
            "handler failed",
            session_id=live.id,
            correlation_id=inbound.message_id,
            error_type=type(error).__name__,
            error=str(error),
            exc_info=(type(error), error, error.__traceback__),
        )
        live.record(lambda at: agg.reply(error_reply(error), at=at), Reply(error_reply(error)))
    elapsed = (time.perf_counter() - started) * 1000
    agg.complete_turn(
        outcome="failed" if error else "ok",
        duration_ms=elapsed,
        at=live.clock(),
        error_type=type(error).__name__ if error else None,
        error_message=str(error) if error else None,
    )
    await live.settle()  # what the handler did, its data and its outcome: often one commit
    return TurnResult(
        session_id=agg.id,
        message_id=inbound.message_id,
        outcome="failed" if error else "ok",
        replies=tuple(live.turn_replies),
        error_type=type(error).__name__ if error else None,
        error_message=str(error) if error else None,
    )


async def _run_handler(
    handler: Callable[..., Any], slot: Slot, message: Message
) -> BaseException | None:
    token = context.caller.set(slot.session)
    error: BaseException | None = None
    try:
        result = handler(slot.session, message)
        if inspect.isawaitable(result):
            await result
    except Exception as e:
        error = e
    finally:
        context.caller.reset(token)
    return error


def _record_data(slot: Slot) -> DomainError | None:
    """Record each top-level key of ``session.data`` that changed since the last record
    (compared by encoding, so in-place changes to nested lists and dicts count). A value
    that cannot be recorded is put back to its recorded value and reported."""
    agg, data, recorded = slot.live.aggregate, slot.session.data, slot.recorded
    at = slot.live.clock()
    failure: DomainError | None = None
    for key in list(data):
        try:
            encoded = _encode(data[key])
        except (TypeError, ValueError):
            encoded = b""
        if recorded.get(key) == encoded:
            continue
        try:
            agg.set_data(key, data[key], at=at)
        except DomainError as e:
            failure = failure or e
            if key in agg.data:
                data[key] = msgspec.json.decode(recorded[key])
            else:
                del data[key]
            continue
        recorded[key] = _encode(agg.data[key])
    for key in [k for k in recorded if k not in data]:
        agg.delete_data(key, at=at)
        del recorded[key]
    return failure
