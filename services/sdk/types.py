"""Plain values of the app API: who is talking, over what, and what they sent."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class UserInfo:
    """The app user a session or request belongs to."""

    id: str
    email: str | None = None
    org_id: str | None = None

    @property
    def owner_id(self) -> str:
        """Who owns owner-scoped data: the user's org when they have one, else the user."""
        return f"org:{self.org_id}" if self.org_id else self.id


@dataclass(frozen=True)
class SessionChannel:
    """The transport a session arrived through: ``chat``, ``terminal``, ``telegram``, ..."""

    type: str = "chat"
    name: str | None = None


@dataclass(frozen=True)
class Attachment:
    """A file attached to a user message, referenced by URL."""

    name: str
    content_type: str = "application/octet-stream"
    url: str = ""
    size: int = 0

    async def download(self, path: str | Path) -> Path:
        """Save the file at ``path`` (a directory keeps the attachment's name)."""
        parts = urlsplit(self.url)
        if parts.scheme not in ("", "file"):
            msg = f"cannot download {self.url!r}: no store for the {parts.scheme!r} scheme here"
            raise ValueError(msg)
        return await asyncio.to_thread(_copy_to, Path(unquote(parts.path)), Path(path), self.name)


def _copy_to(source: Path, path: Path, name: str) -> Path:
    target = path / name if path.is_dir() else path
    shutil.copyfile(source, target)
    return target


@dataclass(frozen=True)
class Message:
    """One message in a session: the inbound one a handler receives, or one of history."""

    text: str
    sender: str = "user"
    channel_type: str = "chat"
    timestamp: float = 0.0
    attachments: tuple[Attachment, ...] = ()
    id: str = ""


@dataclass(frozen=True)
class Block:
    """A structured UI element; showing a block with the same id again updates it."""

    type: str
    payload: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
