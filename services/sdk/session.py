"""``Session``: what a handler uses to read the conversation and answer in it."""

from __future__ import annotations

import base64
import builtins
import inspect
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from turnlog.services.app.context import Runtime
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.sessions.live import LiveSession, RecordedEffects
from turnlog.services.app.sessions.outbound import BlockView, Notification, Reply
from turnlog.services.sdk.collections import Collection, HasCollections
from turnlog.services.sdk.prompting import Prompting, with_status
from turnlog.services.sdk.streaming import StreamReply, as_text, chunk_text
from turnlog.services.sdk.types import (
    Block,
    FileUpload,
    FileUploadTimeout,
    IntegrationDeclined,
    IntegrationTimeout,
    Message,
    SessionChannel,
    UserInfo,
)

# StreamReply moved to streaming.py; it is still importable from here.
__all__ = ["FAILED", "Session", "StreamReply"]

T = TypeVar("T")


class Session(HasCollections):
    """The runtime context of one conversation: identity, history, data, and replies.

    Effects (``reply``, ``notify``, ``show``...) take place when called: a rule they
    break raises right there. Each is then recorded and delivered in the background, in
    call order, never delivered before it is on record. They return an awaitable that
    completes at once, so ``await session.reply(...)`` reads naturally and a sync handler
    need not await; ``await session.flush()`` waits until everything is on record.
    """

    def __init__(
        self,
        live: LiveSession,
        data: dict[str, Any],
        integrations: Mapping[str, Any] | None = None,
        collections: dict[str, Collection] | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        self._live = live
        self._collections = collections or {}
        self._runtime = runtime or Runtime(live.aggregate.app)
        agg = live.aggregate
        self.id = str(agg.id)
        self.user = UserInfo(id=agg.user.id, email=agg.user.email, org_id=agg.user.org_id)
        self.channel = SessionChannel(type=agg.channel.type, name=agg.channel.name)
        self.data = data
        self.integrations: Mapping[str, Any] = MappingProxyType(dict(integrations or {}))

    def _replaying(self) -> RecordedEffects | None:
        """The recorded effects when this turn is a re-run, else None."""
        return self._live.replaying

    def _meta(self) -> Metadata:
        """Who writes, and in answer to what: carried on this session's document events."""
        return self._live.meta

    def _owner(self, scope: str, collection: str) -> str:
        """Whose documents of a collection of ``scope`` this session reads and writes."""
        return {
            "app": "",
            "owner": self.user.owner_id,
            "user": self.user.id,
            "session": self.id,
        }[scope]

    @property
    def history(self) -> list[Message]:
        """Recent messages (up to 50), oldest first, without the one being handled."""
        return [
            Message(
                text=m["text"],
                sender=m["sender"],
                timestamp=m["at"],
                channel_type=self.channel.type,
                id=m["message_id"] or "",
            )
            for m in self._live.aggregate.recent_messages()
        ]

    def chat_messages(
        self, current: Message | None = None, cls: Callable[..., T] | None = None
    ) -> list[Any]:
        """History (plus ``current``) as alternating user / assistant messages; consecutive
        messages of one role are joined with a blank line."""
        turns = [("user" if m.sender == "user" else "assistant", m.text) for m in self.history]
        if current is not None:
            turns.append(("user", current.text))
        merged: list[tuple[str, str]] = []
        for role, text in turns:
            if merged and merged[-1][0] == role:
                merged[-1] = (role, f"{merged[-1][1]}\n\n{text}")
            else:
                merged.append((role, text))
        if cls is not None:
            return [cls(role=role, content=text) for role, text in merged]
        return [{"role": role, "content": text} for role, text in merged]

    async def flush(self) -> None:
        """Wait until every effect so far is recorded and delivered."""
        await self._live.settle()

    # -- recorded inputs ----------------------------------------------------------------

    async def effect(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn`` (a model, an HTTP request, anything non-deterministic; sync or async)
        and record its result, which must be plain JSON, as ``session.effect_recorded``.
        A result the model refuses raises here, before the handler uses it. When the turn
        is re-run (``turnlog replay --rerun``), ``fn`` is not called: the recorded result
        is returned."""
        recalled = self._live.recall(name)
        if recalled is not None:
            result = recalled.result
        else:
            try:
                result = fn(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as e:  # on record too: a re-run raises it again
                self._record_effect(name, {FAILED: {"type": type(e).__name__, "error": str(e)}})
                raise
        if recalled is None or recalled.again:
            self._record_effect(name, result)
        if isinstance(result, dict) and set(result) == {FAILED}:
            raise _replayed_error(result[FAILED].get("type"), result[FAILED].get("error", ""))
        return result

    def now(self) -> datetime:
        """The current time (UTC), recorded as an effect."""
        recalled = self._live.recall("now")
        if recalled is not None:
            moment = datetime.fromisoformat(recalled.result)
        else:
            moment = self._live.clock()
        if recalled is None or recalled.again:
            self._record_effect("now", moment.isoformat(timespec="microseconds"))
        return moment

    def uuid(self) -> str:
        """A new random id (hex), recorded as an effect."""
        recalled = self._live.recall("uuid")
        value = str(recalled.result) if recalled is not None else uuid.uuid4().hex
        if recalled is None or recalled.again:
            self._record_effect("uuid", value)
        return value

    def _record_effect(self, name: str, result: Any) -> None:
        agg = self._live.aggregate
        self._live.apply(lambda at: agg.record_effect(name, result, at=at))

    # -- answering ----------------------------------------------------------------------

    def reply(self, text: str) -> Awaitable[None]:
        """Send a complete response."""
        text = as_text(text)
        return self._live.record(lambda at: self._live.aggregate.reply(text, at=at), Reply(text))

    def notify(self, text: str) -> Awaitable[None]:
        """Send a lightweight status update (not part of the chat history)."""
        text = as_text(text)
        return self._live.record(
            lambda at: self._live.aggregate.notify(text, at=at), Notification(text)
        )

    def stream_reply(self) -> StreamReply:
        """A reply written in pieces: ``async with session.stream_reply() as r: r.write(...)``."""
        return StreamReply(self._live)

    async def stream(self, chunks: AsyncIterable[Any]) -> str:
        """Pipe an async iterator of strings into one streamed reply; returns its text."""
        async with self.stream_reply() as reply:
            async for chunk in chunks:
                reply.write(chunk_text(chunk))
        return reply.text

    async def stream_reply_from(self, stream: AsyncIterable[Any]) -> str:
        """Pipe a model stream (strings or chunk objects) into one reply; return the text.

        The final text is recorded as effect ``stream_reply_from`` (with the error, if the
        stream failed), so a re-run replays it without opening the stream: make the model
        call inside an async generator for it to be skipped too."""
        recalled = self._live.recall("stream_reply_from")
        if recalled is not None:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()  # never started: nothing is called
            stream = _replayed_stream(recalled.result)
        reply = self.stream_reply()
        try:
            async with reply:
                async for chunk in stream:
                    reply.write(chunk_text(chunk))
        except Exception as e:
            if recalled is None or recalled.again:
                self._record_effect(
                    "stream_reply_from",
                    {"text": reply.text, "error_type": type(e).__name__, "error": str(e)},
                )
            raise
        if recalled is None or recalled.again:
            self._record_effect("stream_reply_from", {"text": reply.text})
        return reply.text

    def show(self, block: Block) -> Awaitable[None]:
        """Render a structured block; the same block id again updates it."""
        payload = dict(block.payload)
        block_id = self._live.block_id(block.id, block.type, payload)
        return self._live.record(
            lambda at: self._live.aggregate.show_block(block_id, block.type, payload, at=at),
            BlockView(block_id, block.type, payload),
        )

    def show_task(self, handle_or_id: Any, message: str | None = None) -> Awaitable[None]:
        """Show a live card for a background task (a task handle or its id)."""
        task_id = str(getattr(handle_or_id, "task_id", handle_or_id))
        payload = {"task_id": task_id, "message": message, "status": "submitted"}
        return self.show(Block("task", payload, id=f"task:{task_id}"))

    def show_integration(self, type: str, reason: str = "") -> Awaitable[None]:
        """Show a non-blocking card inviting the user to connect an integration."""
        payload = {"integration": type, "reason": reason, "connected": type in self.integrations}
        return self.show(Block("integration", payload, id=f"integration:{type}"))

    async def prompt_file(
        self,
        message: str = "Upload a file",
        accept: str = "",
        timeout: float | None = 300.0,
        download_to: str | Path | None = None,
    ) -> FileUpload:
        """Show a file-upload block and wait until the user uploads a file (``accept``:
        extensions and content types, comma-separated, as in HTML). Raises
        ``FileUploadTimeout`` after ``timeout`` seconds (None: wait as long as it takes).
        With ``download_to``, the file is saved there and ``path`` set."""
        prompt = Prompting(self, "file")
        block = Block(
            "file_upload",
            {"prompt_id": prompt.id, "message": message, "accept": accept, "status": "waiting"},
            id=f"prompt:{prompt.id}",
        )
        answer = await prompt.ask(block, timeout, message=message, accept=accept)
        if answer is None:
            raise FileUploadTimeout(f"no file was uploaded within {timeout:g} s")
        if answer.kind == "stopped":
            raise FileUploadTimeout("the runtime stopped before a file was uploaded")
        file, agg = answer.file, self._live.aggregate
        self._live.apply(lambda at: agg.receive_prompt(prompt.id, at=at, file=file))
        upload = FileUpload(
            name=file.name, content_type=file.content_type, url=file.url, size=file.size,
            store=self._runtime.files,
        )  # fmt: skip
        await self.show(with_status(block, "received", file=file.name, size=file.size))
        if download_to is not None:
            upload = replace(upload, path=await upload.download(download_to))
        return upload

    async def prompt_integration(
        self, type: str, reason: str = "", timeout: float | None = 300.0
    ) -> Any:
        """The credentials of integration ``type``: at once if the user has connected it,
        else after showing a blocking integration card and waiting until they connect it.
        Raises ``IntegrationDeclined`` or ``IntegrationTimeout``."""
        if type in self.integrations:
            return self.integrations[type]
        prompt = Prompting(self, "integration")
        block = Block(
            "integration",
            {
                "integration": type,
                "reason": reason,
                "connected": False,
                "blocking": True,
                "prompt_id": prompt.id,
                "status": "waiting",
            },
            id=f"integration:{type}",
        )
        answer = await prompt.ask(block, timeout, message=reason, integration=type)
        if answer is None:
            raise IntegrationTimeout(f"{type} was not connected within {timeout:g} s")
        if answer.kind == "stopped":
            raise IntegrationTimeout(f"the runtime stopped before {type} was connected")
        agg = self._live.aggregate
        if answer.kind == "declined":
            self._live.apply(lambda at: agg.decline_prompt(prompt.id, at=at))
            await self.show(with_status(block, "declined"))
            raise IntegrationDeclined(f"the user declined to connect {type}")
        self.integrations = MappingProxyType(dict(await self._live.credentials(agg.user.id)))
        self._live.apply(lambda at: agg.receive_prompt(prompt.id, at=at, integration=type))
        await self.show(with_status(block, "connected", connected=True))
        if type not in self.integrations:  # disconnected again meanwhile
            raise IntegrationDeclined(f"{type} was disconnected before it could be used")
        return self.integrations[type]

    def show_image(
        self, source: str | bytes, alt: str = "", width: int | None = None
    ) -> Awaitable[None]:
        """Render an image inline, from a URL or path, or from raw bytes."""
        if isinstance(source, bytes):
            source = "data:image/png;base64," + base64.b64encode(source).decode()
        return self.show(Block("image", {"source": str(source), "alt": alt, "width": width}))


FAILED = "$failed"
"""An effect whose call raised is recorded as ``{"$failed": {"type", "error"}}``."""


def _replayed_error(type_name: Any, message: Any) -> Exception:
    """An exception of the recorded type name and message (a re-run raises it again): the
    built-in exception of that name (so ``except ConnectionError`` catches it again), else
    a class of that name made for the purpose."""
    name = str(type_name or "Exception")
    builtin = getattr(builtins, name, None)
    if isinstance(builtin, type) and issubclass(builtin, Exception):
        return builtin(str(message))
    made: type[Exception] = type(name, (Exception,), {"__module__": "replayed"})
    return made(str(message))


async def _replayed_stream(recorded: Any) -> AsyncIterator[str]:
    """The recorded outcome of a model stream: its text, then its error if it failed (an
    exception of the recorded type name, so the turn ends as it did)."""
    text = recorded.get("text", "") if isinstance(recorded, dict) else str(recorded)
    if text:
        yield text
    if isinstance(recorded, dict) and recorded.get("error_type"):
        raise _replayed_error(recorded["error_type"], recorded.get("error", ""))
