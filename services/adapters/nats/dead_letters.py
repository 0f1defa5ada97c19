"""Dead letters: what cannot be handled goes to ``turnlog.dlq.<app>`` with its reason and
original bytes, and is recorded on its session when that session exists."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from turnlog.contracts import bus
from turnlog.contracts.events import AttachmentRef, ChannelRef, UserRef
from turnlog.domain.errors import TurnlogError
from turnlog.services.adapters.nats.delivery import BusDelivery
from turnlog.services.adapters.nats.partitioning import producer_subject
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.app.ports import Metrics
from turnlog.services.app.sessions.host import SessionHost
from turnlog.services.app.sessions.turn import Inbound

log = structlog.get_logger("turnlog.ingress")
_encode = msgspec.json.Encoder().encode

DEAD_LETTER_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "session_not_found": "unknown_session",
        "session_of_another_app": "wrong_app",
        # The model's other refusals have always gone out as "invalid_" and their class's
        # name; the text policy's (invalid_text, too_deep, invalid_user) as their code.
        "domain_error": "invalid_domainerror",
        "session_closed": "invalid_sessionclosed",
        "turn_in_progress": "invalid_turninprogress",
        "no_turn_in_progress": "invalid_noturninprogress",
        "prompt_waiting": "invalid_promptwaiting",
        "no_prompt_waiting": "invalid_nopromptwaiting",
        "not_json_encodable": "invalid_notjsonencodable",
        "too_large": "invalid_toolarge",
        "invalid_value": "invalid_invalidvalue",
        "unknown_data_key": "invalid_unknowndatakey",
        "document_deleted": "invalid_documentdeleted",
        "invalid_query": "invalid_queryerror",
        "task_error": "invalid_taskerror",
        "task_finished": "invalid_taskfinished",
        "task_not_running": "invalid_tasknotrunning",
        "task_running": "invalid_taskrunning",
        "schedule_error": "invalid_scheduleerror",
        "tick_taken": "invalid_ticktaken",
        "run_in_progress": "invalid_runinprogress",
        "no_run_in_progress": "invalid_noruninprogress",
        "integration_error": "invalid_integrationerror",
    }
)
"""The reason a dead letter gives for an error that stopped its message, by the error's
code, where the two differ (``session_ended``, ``invalid_text``... are both)."""


def dead_letter_reason(error: TurnlogError) -> str:
    """The dead letter's reason for a message that ``error`` stopped."""
    return DEAD_LETTER_REASONS.get(error.code, error.code)


class Rejected(TurnlogError):
    """Raised inside the ingress when an inbound message cannot be handled; ``reason`` is
    the dead letter's (the error's ``code`` stays ``rejected``)."""

    code = "rejected"

    def __init__(
        self,
        reason: str,
        detail: str,
        session_id: str | None = None,
        message_id: str | None = None,
        *,
        on_record: bool = True,
    ) -> None:
        """``on_record``: also record ``session.input_rejected`` on the session (which
        waits for its turn in progress; not for answers to that turn's prompts)."""
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail
        self.session_id, self.message_id = session_id, message_id
        self.on_record = on_record


class DeadLetters:
    """Sends the app's rejected inbound messages to its dead-letter subject."""

    def __init__(
        self,
        host: SessionHost,
        js: JetStreamContext,
        subjects: Subjects,
        delivery: BusDelivery,
        metrics: Metrics,
    ) -> None:
        self.host = host
        self.metrics = metrics
        self.js = js
        self.subjects = subjects
        self.delivery = delivery
        self.app = host.app.name

    async def given_up(self, session_id: uuid.UUID, message: Inbound, reason: str) -> None:
        """Dead-letter a turn given up after its attempts were cut off (it is on record
        as interrupted already): its message as the producer sent it, from the record."""
        sid = str(session_id)
        log.error("turn given up", session_id=sid, correlation_id=message.message_id)
        original = bus.InboundMessage(
            message_id=message.message_id,
            session_id=sid,
            user=UserRef(id=message.user.id, email=message.user.email, org_id=message.user.org_id),
            channel=ChannelRef(type=message.channel.type, name=message.channel.name),
            text=message.text,
            attachments=tuple(
                AttachmentRef(name=a.name, content_type=a.content_type, url=a.url, size=a.size)
                for a in message.attachments
            ),
            sent_at=message.sent_at,
        )
        letter = bus.DeadLetter(
            reason="turn_given_up",
            detail=reason,
            subject=self.subjects.inbound(self.app, sid),
            app=self.app,
            session_id=sid,
            original=_encode(original),
            received_at=datetime.now(UTC).isoformat(timespec="microseconds"),
        )
        await self.js.publish(self.subjects.dlq(self.app), _encode(letter))
        self.metrics.dead_lettered(self.app, "turn_given_up")
        await self.delivery.done(sid, message.message_id, "rejected", f"turn_given_up: {reason}")

    async def send(self, msg: Msg, rejected: Rejected) -> None:
        """Record the rejection on its session (if it names one), publish the dead letter
        (with the subject the producer sent it on), then tell the producer waiting for
        its outcome."""
        subject = producer_subject(msg.subject, self.subjects.prefix)
        log.warning(
            "inbound message rejected",
            subject=subject,
            reason=rejected.reason,
            detail=rejected.detail,
        )
        letter = bus.DeadLetter(
            reason=rejected.reason,
            detail=rejected.detail,
            subject=subject,
            app=self.app,
            session_id=rejected.session_id,
            original=msg.data,
            received_at=datetime.now(UTC).isoformat(timespec="microseconds"),
        )
        if rejected.session_id and rejected.on_record:  # on record first, then announced
            with contextlib.suppress(ValueError):
                await self.host.reject(
                    uuid.UUID(rejected.session_id),
                    rejected.message_id,
                    rejected.reason,
                    rejected.detail,
                )
        await self.js.publish(self.subjects.dlq(self.app), _encode(letter))
        self.metrics.dead_lettered(self.app, rejected.reason)
        if rejected.session_id and rejected.message_id:
            await self.delivery.done(
                rejected.session_id,
                rejected.message_id,
                "rejected",
                f"{rejected.reason}: {rejected.detail}",
            )
