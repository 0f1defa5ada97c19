"""Inbound messages off the bus: decoded, and checked against their subject and the text
policy; what cannot be used raises Rejected (to be dead-lettered)."""

from __future__ import annotations

import uuid

import msgspec

from turnlog.contracts import bus
from turnlog.domain import values
from turnlog.domain.errors import DomainError
from turnlog.services.adapters.nats.dead_letters import Rejected, dead_letter_reason
from turnlog.services.adapters.nats.partitioning import parse_inbound, partition_of
from turnlog.services.adapters.nats.subjects import Subjects

_decoder = msgspec.json.Decoder(bus.Inbound)


def decode(subject: str, data: bytes, subjects: Subjects, app: str, max_bytes: int) -> bus.Inbound:
    """The inbound message in ``data``, checked against its subject (as the producer
    sent it, or as the stream stored it, with the session's partition in it); raises
    Rejected."""
    parsed = parse_inbound(subject, subjects.prefix)
    if parsed is None:
        raise Rejected("bad_subject", f"expected {subjects.inbound_all(app)}, got {subject}")
    subject_session = parsed.session_id
    if parsed.app != app:
        raise Rejected("unknown_app", f"no app {parsed.app!r} is served here", subject_session)
    if len(data) > max_bytes:
        raise Rejected("too_large", f"{len(data)} bytes; the limit is {max_bytes}", subject_session)
    message = _decode(data, subject_session)
    named = message.session_id
    if named != subject_session:
        raise Rejected(
            "schema_violation",
            f"subject names session {parsed.token!r} but the message names {named!r}",
            subject_session,
            message.message_id,
        )
    if named is not None:
        _check_session_id(named, message.message_id, partitioned=parsed.partition is not None)
    if parsed.misplaced:
        raise Rejected(
            "wrong_partition",
            f"{subject} is partition {parsed.partition}; session {parsed.token!r} is in"
            f" partition {partition_of(parsed.token)} (publish on"
            f" {subjects.inbound(app, subject_session)}: the stream partitions it)",
            subject_session,
            message.message_id,
            on_record=False,  # the session is another runtime's to record on
        )
    return message


def _check_session_id(named: str, message_id: str, *, partitioned: bool) -> None:
    """A session id is a UUID; in a partitioned subject, in its canonical form (lowercase,
    hyphenated), so that every message of a session falls into one partition."""
    try:
        canonical = str(uuid.UUID(named))
    except ValueError:
        raise Rejected(
            "schema_violation", f"session_id {named!r} is not a UUID", None, message_id
        ) from None
    if partitioned and canonical != named:
        raise Rejected(
            "schema_violation",
            f"session_id {named!r} is not a UUID in canonical form ({canonical!r})",
            None,
            message_id,
        )


def _decode(data: bytes, subject_session: str | None) -> bus.Inbound:
    """``data`` as an inbound message whose every text is storable (see the text policy
    in ``turnlog.domain.values``); raises Rejected."""
    try:
        message: bus.Inbound = _decoder.decode(data)
    except msgspec.ValidationError as e:
        raise Rejected("schema_violation", str(e), subject_session) from None
    except msgspec.DecodeError as e:
        problem = values.raw_text_problem(data)
        if problem is not None:
            detail = f"the message holds {problem}"
            raise Rejected("invalid_text", detail, subject_session) from None
        raise Rejected("undecodable", str(e), subject_session) from None
    except RecursionError:
        raise Rejected(
            "too_deep", "the message nests too deeply to decode", subject_session
        ) from None
    try:
        # What msgspec decoded is UTF-8 without lone surrogates; U+0000 can only have come
        # as the escape \u0000, and nesting only in set_vars' values: look only then.
        if b"\\u0000" in data:
            values.json_value(msgspec.to_builtins(message), "message")
        elif isinstance(message, bus.SetSessionVars):
            values.json_value(message.variables, "message variables")
        if isinstance(message, bus.InboundMessage):
            values.user_id(message.user.id, "message user.id")
    except DomainError as e:
        message_id = values.clean(message.message_id)
        reason = dead_letter_reason(e) if e.code in values.POLICY_CODES else "schema_violation"
        raise Rejected(reason, str(e), subject_session, message_id) from None
    return message
