"""Replies streamed in pieces (StreamReply), and the text of a model stream's chunks."""

from __future__ import annotations

import uuid
from types import TracebackType
from typing import Any

from turnlog.services.app.sessions.live import LiveSession
from turnlog.services.app.sessions.outbound import Chunk, Reply


class StreamReply:
    """A reply being streamed: chunks go out live as written; the full text is recorded
    once when the block exits (marked interrupted if the block raised)."""

    def __init__(self, live: LiveSession) -> None:
        self._live = live
        self._parts: list[str] = []
        self._id = uuid.uuid4().hex
        self._open = False

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def write(self, text: str) -> None:
        if not self._open:
            raise RuntimeError("write() outside 'async with session.stream_reply()'")
        text = as_text(text)
        self._parts.append(text)
        self._live.send_live(Chunk(self._id, text))

    async def __aenter__(self) -> StreamReply:
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open = False
        interrupted = exc_type is not None
        text = self.text
        if interrupted and not text:
            return
        await self._live.record(
            lambda at: self._live.aggregate.reply(
                text, at=at, streamed=True, interrupted=interrupted
            ),
            Reply(text, streamed=True, interrupted=interrupted),
        )


def as_text(value: Any) -> str:
    """``value`` if it is text (a str), else TypeError."""
    if not isinstance(value, str):
        raise TypeError(f"expected text (str), got {type(value).__name__}")
    return value


def chunk_text(chunk: Any) -> str:
    """Text of a stream chunk: a str, or a model chunk with ``choices[0].delta.content``,
    ``.text``, ``.content`` or ``.delta``."""
    if isinstance(chunk, str):
        return chunk
    choices = getattr(chunk, "choices", None)
    if choices:
        delta = getattr(choices[0], "delta", None)
        content = getattr(delta, "content", None)
        return content or ""
    for name in ("text", "content", "delta"):
        value = getattr(chunk, name, None)
        if isinstance(value, str):
            return value
    return str(chunk)
