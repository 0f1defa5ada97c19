"""Files users send: kept in a blob store and referenced by URL in the log.

The default store is a NATS JetStream object store (bucket ``TURNLOG_FILES`` for prefix
``turnlog``): a file is put once, under a fresh id, and events carry only its reference,
``nats-object://<bucket>/<id>``, with its name, content type and size. Uploads and
downloads stream in chunks, so a file is never held in memory whole.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from nats.js import JetStreamContext
from nats.js.api import ObjectMeta, ObjectStoreConfig
from nats.js.errors import BucketNotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from turnlog.contracts.events import AttachmentRef
from turnlog.services.app.values import FileError

__all__ = ["SCHEME", "FileError", "FileStore"]

SCHEME = "nats-object"
DEFAULT_MAX_BYTES = 25 * 1024 * 1024


class FileStore:
    """Puts files into a JetStream object store and gets them back by reference."""

    def __init__(self, js: JetStreamContext, bucket: str, max_bytes: int = DEFAULT_MAX_BYTES):
        self.js, self.bucket, self.max_bytes = js, bucket, max_bytes
        self._lock = asyncio.Lock()
        self._store: ObjectStore | None = None

    async def _obs(self) -> ObjectStore:
        async with self._lock:
            if self._store is None:
                try:
                    self._store = await self.js.object_store(self.bucket)
                except BucketNotFoundError:
                    self._store = await self.js.create_object_store(
                        self.bucket, ObjectStoreConfig(description="turnlog files")
                    )
            return self._store

    def ours(self, url: str) -> bool:
        """Whether ``url`` is a file of this kind of store (its bucket is checked when read)."""
        return urlsplit(url).scheme == SCHEME

    def check_size(self, name: str, size: int) -> None:
        if size > self.max_bytes:
            raise FileError(
                f"{name} is {_size(size)}; files may be at most {_size(self.max_bytes)}"
                " (TURNLOG_MAX_FILE_BYTES)"
            )

    async def put_path(
        self, path: str | Path, *, name: str | None = None, content_type: str | None = None
    ) -> AttachmentRef:
        """Store the file at ``path``; its reference."""
        path = Path(path)
        try:
            size = path.stat().st_size
        except OSError as e:
            raise FileError(f"cannot read {path}: {e.strerror}") from None
        name = name or path.name
        self.check_size(name, size)
        f = await asyncio.to_thread(path.open, "rb")
        with f:
            return await self._put(f, name, size, content_type)

    async def put_bytes(
        self, data: bytes, name: str, content_type: str | None = None
    ) -> AttachmentRef:
        self.check_size(name, len(data))
        return await self._put(io.BytesIO(data), name, len(data), content_type)

    async def _put(
        self, source: io.BufferedIOBase, name: str, size: int, content_type: str | None
    ) -> AttachmentRef:
        obs = await self._obs()
        object_id = uuid.uuid4().hex
        await obs.put(object_id, source, meta=ObjectMeta(name=object_id, description=name))
        return AttachmentRef(
            name=name,
            content_type=content_type or _guess(name),
            url=f"{SCHEME}://{self.bucket}/{quote(object_id)}",
            size=size,
        )

    async def download(self, url: str, target: Path) -> Path:
        """Write the file ``url`` refers to at ``target`` (streamed)."""
        object_id = self._object_id(url)
        obs = await self._obs()
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            f = await asyncio.to_thread(partial.open, "wb")
            with f:
                await obs.get(object_id, writeinto=f)
        except ObjectNotFoundError:
            partial.unlink(missing_ok=True)
            raise FileError(
                f"no file {url} in the file store (deleted, or another store)"
            ) from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(target)
        return target

    async def read(self, url: str) -> bytes:
        obs = await self._obs()
        try:
            result = await obs.get(self._object_id(url))
        except ObjectNotFoundError:
            raise FileError(
                f"no file {url} in the file store (deleted, or another store)"
            ) from None
        return bytes(result.data or b"")

    def _object_id(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme != SCHEME or parts.netloc != self.bucket:
            raise FileError(f"{url} is not a file of bucket {self.bucket!r}")
        return unquote(parts.path.lstrip("/"))


def _guess(name: str) -> str:
    import mimetypes

    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"
