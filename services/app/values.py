"""Plain values of the app API (who is talking, over what, and what they sent), which the
runtime makes and the SDK hands to handlers (``turnlog.UserInfo``, ``turnlog.Message``...)."""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from turnlog.domain.errors import TurnlogError

if TYPE_CHECKING:
    from turnlog.services.app.ports import Files


class FileError(TurnlogError):
    """Raised when a file cannot be stored or fetched: too large, missing, unreadable, or
    not in turnlog's file store."""

    code = "file_error"


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
    store: Files | None = field(default=None, repr=False, compare=False)
    """The file store it comes from, when the runtime gave one."""

    async def download(self, path: str | Path) -> Path:
        """Save the file at ``path``; the path written. A directory (an existing one, or a
        path ending in "/", created if missing) keeps the attachment's name. Files sent
        through turnlog are fetched from its file store."""
        return await download(self.store, self.url, self.name, path)


async def download(store: Files | None, url: str, name: str, path: str | Path) -> Path:
    """Fetch the file ``url`` refers to from turnlog's file store into ``path``. A
    directory (one that exists, or a path ending in "/", which is created with its
    parents when missing) gets the file under its own name, never outside the directory.
    Only files in the file store are fetched: a URL of anything else (a local path, the
    web) is the app's to fetch, not turnlog's."""
    if store is None:
        raise FileError(
            "no file store in this process: files are fetched inside turnlog's runtime"
            " (turnlog run / serve runtime / chat)"
        )
    if not store.ours(url):
        raise FileError(f"cannot download {url!r}: it is not in turnlog's file store")
    target = Path(path)
    into_directory = _names_a_directory(path)
    if into_directory or await asyncio.to_thread(target.is_dir):
        base = Path(name).name
        if base in ("", ".", ".."):
            raise FileError(f"{name!r} is no file name to save under")
        if into_directory:
            await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
        target = target / base
    return await store.download(url, target)


def _names_a_directory(path: str | Path) -> bool:
    """Whether ``path`` was written as a directory ("inbox/"): Path() drops the slash."""
    text = os.fspath(path)
    return text.endswith("/") or (os.sep != "/" and text.endswith(os.sep))


@dataclass(frozen=True)
class FileUpload:
    """What ``session.prompt_file`` returns: the uploaded file, by reference; ``path`` is
    where it was saved when the prompt was asked to download it."""

    name: str
    content_type: str = "application/octet-stream"
    url: str = ""
    size: int = 0
    path: Path | None = None
    store: Files | None = field(default=None, repr=False, compare=False)

    async def download(self, path: str | Path) -> Path:
        """Save the file at ``path`` (a directory, existing or written with a trailing "/",
        keeps the file's name); the path written."""
        return await download(self.store, self.url, self.name, path)


class FileUploadTimeout(TurnlogError, TimeoutError):
    """Raised by ``prompt_file`` when no file is uploaded within its timeout."""

    code = "file_upload_timeout"


class IntegrationTimeout(TurnlogError, TimeoutError):
    """Raised by ``prompt_integration`` when the user does not connect within its timeout."""

    code = "integration_timeout"


class IntegrationDeclined(TurnlogError):
    """Raised by ``prompt_integration`` when the user declines to connect."""

    code = "integration_declined"


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
