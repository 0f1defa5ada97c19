"""Plain values of the app API: who is talking, over what, and what they sent."""

from __future__ import annotations

from turnlog.services.app.values import (
    Attachment,
    Block,
    FileError,
    FileUpload,
    FileUploadTimeout,
    IntegrationDeclined,
    IntegrationTimeout,
    Message,
    SessionChannel,
    UserInfo,
)

__all__ = [
    "Attachment",
    "Block",
    "FileError",
    "FileUpload",
    "FileUploadTimeout",
    "IntegrationDeclined",
    "IntegrationTimeout",
    "Message",
    "SessionChannel",
    "UserInfo",
]
