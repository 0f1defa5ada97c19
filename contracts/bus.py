"""What travels on NATS: inbound messages and control from producers, the durable event
envelope, live chunks and notifications, dead letters, and integration commands and
notices.

Inbound contracts forbid unknown fields (a typo is an error, not silently ignored);
outbound ones tolerate them, so consumers keep working when fields are added.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from turnlog.contracts.events import AttachmentRef, ChannelRef, UserRef
from turnlog.contracts.query import ErrorBody


class _Inbound(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="kind"
):
    message_id: str
    """Idempotency key: the same id again is never handled twice."""


class InboundMessage(_Inbound, frozen=True, kw_only=True, tag="message"):
    """A user message for an app, published on ``turnlog.in.<app>.<session_id>``.

    ``session_id`` None (subject token ``new``) starts a new session."""

    session_id: str | None = None
    user: UserRef
    channel: ChannelRef = msgspec.field(default_factory=ChannelRef)
    text: str
    attachments: tuple[AttachmentRef, ...] = ()
    sent_at: float | None = None


class CloseSession(_Inbound, frozen=True, kw_only=True, tag="close"):
    """Ends a session: its exit hooks run, then ``session.ended`` is recorded."""

    session_id: str
    reason: str = "closed"


class SetSessionVars(_Inbound, frozen=True, kw_only=True, tag="set_vars"):
    """Sets ``session.data`` keys from outside a turn, recorded with the producer as actor."""

    session_id: str
    variables: dict[str, Any]
    actor: str = "producer"


PROMPT_ID = r"^[A-Za-z0-9_-]{1,64}$"
"""What a prompt id looks like (one NATS subject token)."""


class PromptAnswer(_Inbound, frozen=True, kw_only=True, tag="prompt_answer"):
    """Answers a prompt a handler is waiting on (its block carries ``prompt_id``): the
    uploaded ``file`` for ``prompt_file``, or ``declined`` for ``prompt_integration``
    (connecting the integration answers that one by itself)."""

    session_id: str
    prompt_id: Annotated[str, msgspec.Meta(pattern=PROMPT_ID)]
    file: AttachmentRef | None = None
    declined: bool = False


Inbound = InboundMessage | CloseSession | SetSessionVars | PromptAnswer


class EventEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    """A committed event as published on ``turnlog.events.<app>.<stream_id>``; the
    message id (``Nats-Msg-Id``) is ``<log id>:<position>``, so republishing is idempotent."""

    position: int
    stream_id: str
    version: int
    type: str
    schema_version: int
    recorded_at: str
    correlation_id: str | None = None
    causation_id: str | None = None
    actor: str | None = None
    payload: dict[str, Any] = {}


class _Live(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    session_id: str


class LiveChunk(_Live, frozen=True, kw_only=True, tag="chunk"):
    """A piece of a streaming reply, as it is written (never stored on its own)."""

    stream_id: str
    text: str


class LiveNotification(_Live, frozen=True, kw_only=True, tag="notify"):
    """A notification, sent once it is on record."""

    text: str


class LiveReply(_Live, frozen=True, kw_only=True, tag="reply"):
    """A complete reply (streamed ones too, with their full text), once it is on record."""

    text: str
    streamed: bool = False
    interrupted: bool = False


class LiveBlock(_Live, frozen=True, kw_only=True, tag="block"):
    """A block shown or updated, once it is on record."""

    block_id: str
    block_type: str
    payload: dict[str, Any]


class LiveDone(_Live, frozen=True, kw_only=True, tag="done"):
    """A control message has been handled (``outcome`` ok, or the error)."""

    message_id: str
    outcome: str
    error: str | None = None


Live = LiveChunk | LiveNotification | LiveReply | LiveBlock | LiveDone


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """An inbound message that could not be handled, published on ``turnlog.dlq.<app>``,
    with the reason and the original bytes."""

    reason: str
    detail: str
    subject: str
    app: str
    session_id: str | None = None
    received_at: str
    original: bytes


class IntegrationChanged(msgspec.Struct, frozen=True, kw_only=True):
    """Published on core NATS ``turnlog.integrations.<user>`` once an integration's
    connection or disconnection is on record, so runtimes can refresh what their
    handlers see. It never carries the credentials."""

    user_id: str
    type: str
    connected: bool


class _IntegrationCommand(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="kind"
):
    user_id: str
    type: str
    actor: str = "producer"
    """Recorded as ``producer:<actor>``."""


class ConnectIntegration(_IntegrationCommand, frozen=True, kw_only=True, tag="connect"):
    """Connects (or connects again) an integration for a user: a request on
    ``turnlog.control.integrations``, answered with an ``IntegrationAnswer``."""

    credentials: dict[str, Any]
    scopes: tuple[str, ...] = ()


class DisconnectIntegration(_IntegrationCommand, frozen=True, kw_only=True, tag="disconnect"):
    """Disconnects a user's integration; ``changed`` in the answer says whether it was
    connected."""

    reason: str = ""


IntegrationCommand = ConnectIntegration | DisconnectIntegration


class IntegrationAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to an ``IntegrationCommand``: ``ok`` with ``changed``, or the error
    (``code`` ``invalid_request`` or ``internal``, as the query API's)."""

    ok: bool
    changed: bool = False
    error: ErrorBody | None = None


WIRE_TYPES: dict[str, Any] = {
    "inbound": Inbound,
    "event_envelope": EventEnvelope,
    "live": Live,
    "dead_letter": DeadLetter,
    "integration_command": IntegrationCommand,
    "integration_answer": IntegrationAnswer,
    "integration_changed": IntegrationChanged,
}
