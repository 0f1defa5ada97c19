"""Payloads of stored events, each with a stable type name and a schema version.

The type name (``session.reply_sent``) is what the log stores; it never changes when
code moves. A payload whose shape changes gets a new ``SCHEMA_VERSION`` and an upcaster
that lifts the old shape on read.

The payloads are defined by what they are about, in ``session_events``,
``document_events``, ``schedule_events``, ``user_events`` and ``task_events`` (their base
in ``event_payload``), and all importable from here.
"""

from __future__ import annotations

from turnlog.contracts.document_events import (
    DOCUMENT_PAYLOADS,
    SCOPES,
    DocumentDeleted,
    DocumentInserted,
    DocumentUpdated,
)
from turnlog.contracts.event_payload import AttachmentRef, ChannelRef, EventPayload, UserRef
from turnlog.contracts.schedule_events import (
    SCHEDULE_PAYLOADS,
    ScheduleCompleted,
    ScheduleFired,
    ScheduleInterrupted,
    ScheduleSkipped,
)
from turnlog.contracts.session_events import (
    PROMPT_KINDS,
    SESSION_PAYLOADS,
    BlockShown,
    DataDeleted,
    DataSet,
    EffectRecorded,
    InputRejected,
    MessageReceived,
    Notified,
    PromptDeclined,
    Prompted,
    PromptInterrupted,
    PromptReceived,
    PromptTimedOut,
    ReplySent,
    SessionEnded,
    SessionStarted,
    TurnCompleted,
    TurnInterrupted,
    TurnResumed,
)
from turnlog.contracts.task_events import (
    TASK_PAYLOADS,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskProgressed,
    TaskStarted,
    TaskSubmitted,
)
from turnlog.contracts.user_events import (
    INTEGRATION_PAYLOADS,
    USER_PAYLOADS,
    IntegrationConnected,
    IntegrationDisconnected,
    UserErased,
)

__all__ = [
    "ALL_PAYLOADS",
    "DOCUMENT_PAYLOADS",
    "INTEGRATION_PAYLOADS",
    "PROMPT_KINDS",
    "SCHEDULE_PAYLOADS",
    "SCOPES",
    "SESSION_PAYLOADS",
    "TASK_PAYLOADS",
    "USER_PAYLOADS",
    "AttachmentRef",
    "BlockShown",
    "ChannelRef",
    "DataDeleted",
    "DataSet",
    "DocumentDeleted",
    "DocumentInserted",
    "DocumentUpdated",
    "EffectRecorded",
    "EventPayload",
    "InputRejected",
    "IntegrationConnected",
    "IntegrationDisconnected",
    "MessageReceived",
    "Notified",
    "PromptDeclined",
    "PromptInterrupted",
    "PromptReceived",
    "PromptTimedOut",
    "Prompted",
    "ReplySent",
    "ScheduleCompleted",
    "ScheduleFired",
    "ScheduleInterrupted",
    "ScheduleSkipped",
    "SessionEnded",
    "SessionStarted",
    "TaskCancelled",
    "TaskCompleted",
    "TaskFailed",
    "TaskProgressed",
    "TaskStarted",
    "TaskSubmitted",
    "TurnCompleted",
    "TurnInterrupted",
    "TurnResumed",
    "UserErased",
    "UserRef",
]

ALL_PAYLOADS: tuple[type[EventPayload], ...] = (
    SESSION_PAYLOADS
    + DOCUMENT_PAYLOADS
    + USER_PAYLOADS
    + SCHEDULE_PAYLOADS
    + INTEGRATION_PAYLOADS
    + TASK_PAYLOADS
)
