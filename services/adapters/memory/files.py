"""A file store in memory: files put by a test (or a producer in one), read by handlers."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from turnlog.contracts.events import AttachmentRef
from turnlog.services.app.values import FileError

SCHEME = "memory://files/"


class MemoryFiles:
    def __init__(self) -> None:
        self._files: dict[str, bytes] = {}

    def put(
        self, name: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> AttachmentRef:
        """Keep ``data``; the reference a message or a prompt's answer carries."""
        url = f"{SCHEME}{uuid.uuid4().hex}/{name}"
        self._files[url] = bytes(data)
        return AttachmentRef(name=name, content_type=content_type, url=url, size=len(data))

    def ours(self, url: str) -> bool:
        return url.startswith(SCHEME)

    async def download(self, url: str, path: Path) -> Path:
        data = self._files.get(url)
        if data is None:
            raise FileError(f"no file {url} in the file store (deleted, or another store)")
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        partial.write_bytes(data)
        os.replace(partial, path)
        return path
