"""turnlog: an event-sourced runtime and service for conversational apps.

Write handlers against ``App`` and ``Session``; turnlog records everything that happens
in a session as immutable events.
"""

from __future__ import annotations

from turnlog.domain.errors import QueryError, TurnlogError
from turnlog.services.adapters.nats.client import Client, ClientError, ClientSession
from turnlog.services.app.collections import DuplicateKey
from turnlog.services.app.rounds import Round
from turnlog.services.app.tasks.values import TaskStatus, UnknownTask
from turnlog.services.sdk.app import App, AppError
from turnlog.services.sdk.collections import Collection, CollectionError
from turnlog.services.sdk.context import current_session
from turnlog.services.sdk.request import RequestContext
from turnlog.services.sdk.scheduled import NoReplyTarget, ScheduledSession
from turnlog.services.sdk.session import Session, StreamReply
from turnlog.services.sdk.task_session import TaskRun, TaskSession, current_task
from turnlog.services.sdk.tasks import TaskDef, TaskHandle
from turnlog.services.sdk.types import (
    Attachment,
    Block,
    FileUpload,
    FileUploadTimeout,
    IntegrationDeclined,
    IntegrationTimeout,
    Message,
    SessionChannel,
    UserInfo,
)

__version__ = "0.1.0"

__all__ = [
    "App",
    "AppError",
    "Attachment",
    "Block",
    "Client",
    "ClientError",
    "ClientSession",
    "Collection",
    "CollectionError",
    "DuplicateKey",
    "FileUpload",
    "FileUploadTimeout",
    "IntegrationDeclined",
    "IntegrationTimeout",
    "Message",
    "NoReplyTarget",
    "QueryError",
    "RequestContext",
    "Round",
    "ScheduledSession",
    "Session",
    "SessionChannel",
    "StreamReply",
    "TaskDef",
    "TaskHandle",
    "TaskRun",
    "TaskSession",
    "TaskStatus",
    "TurnlogError",
    "UnknownTask",
    "UserInfo",
    "current_session",
    "current_task",
]
