"""A producer's session of an app over NATS: messages sent, prompts answered, answers awaited."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import nats
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from turnlog.contracts import bus
from turnlog.contracts.events import AttachmentRef, ChannelRef, UserRef
from turnlog.domain import values
from turnlog.domain.errors import DomainError, TurnlogError
from turnlog.services.adapters.nats import files
from turnlog.services.app.rounds import Round

if TYPE_CHECKING:
    from turnlog.services.adapters.nats.client import Client

EventHandler = Callable[[bus.EventEnvelope | bus.Live], Awaitable[None] | None]
_envelope = msgspec.json.Decoder(bus.EventEnvelope)
_live = msgspec.json.Decoder(bus.Live)
_encode = msgspec.json.Encoder().encode


class ClientError(TurnlogError):
    """Raised when the runtime does not answer in time or refuses a request."""

    code = "client_error"


class ClientSession:
    def __init__(
        self, client: Client, app: str, session_id: str, user: UserRef, channel: ChannelRef
    ) -> None:
        self.client, self.app, self.id = client, app, session_id
        self.user, self.channel = user, channel
        self._subs: list[Subscription] = []
        self._waiters: dict[str, tuple[Round, asyncio.Future[Any], EventHandler | None]] = {}

    async def send_message(
        self,
        text: str,
        *,
        on_event: EventHandler | None = None,
        files: Sequence[Mapping[str, Any]] | None = None,
        timeout: float = 60.0,
    ) -> Round:
        """Send ``text`` and wait for its turn to complete. ``on_event`` receives live
        chunks, notifications and replies as they happen and each recorded event.
        ``files`` are uploaded to the file store first: each ``{"path": ...}`` or
        ``{"name": ..., "data": bytes}`` (optional ``content_type``), or ``{"name": ...,
        "url": ...}`` for a file stored elsewhere."""
        try:
            values.bounded_text(text, "message text")
        except DomainError as e:
            raise ClientError(str(e)) from None
        attachments = tuple([await self._attach(f) for f in files or ()])
        message = bus.InboundMessage(
            message_id=uuid.uuid4().hex,
            session_id=self.id,
            user=self.user,
            channel=self.channel,
            text=text,
            sent_at=time.time(),
            attachments=attachments,
        )
        return await self._request(message, on_event, timeout, until="session.turn_completed")

    async def _attach(self, spec: Mapping[str, Any]) -> AttachmentRef:
        store = self.client.files
        content_type = spec.get("content_type")
        try:
            if "path" in spec:
                return await store.put_path(
                    spec["path"], name=spec.get("name"), content_type=content_type
                )
            if "data" in spec:
                return await store.put_bytes(bytes(spec["data"]), spec["name"], content_type)
        except files.FileError as e:
            raise ClientError(str(e)) from None
        except nats.errors.Error as e:
            raise ClientError(
                f"cannot put a file in the file store ({e or type(e).__name__}); where NATS"
                " does not let this producer write there, upload with POST /v1/files and"
                " send the reference it answers"
            ) from e
        if "url" not in spec or "name" not in spec:
            raise ClientError(f"a file needs a path, data (with a name) or a url: {spec!r}")
        return AttachmentRef(
            name=spec["name"],
            url=spec["url"],
            size=spec.get("size", 0),
            content_type=content_type or "application/octet-stream",
        )

    async def upload(
        self, prompt_id: str, file: Mapping[str, Any], *, timeout: float = 60.0
    ) -> None:
        """Answer the handler waiting in ``prompt_file`` (its block's ``prompt_id``) with
        ``file`` (as in ``send_message``'s ``files``); the handler goes on at once."""
        _check_prompt_id(prompt_id)
        await self._request(
            bus.PromptAnswer(
                message_id=uuid.uuid4().hex,
                session_id=self.id,
                prompt_id=prompt_id,
                file=await self._attach(file),
            ),
            None,
            timeout,
        )

    async def decline(self, prompt_id: str, *, timeout: float = 60.0) -> None:
        """Decline the integration a handler waits for in ``prompt_integration``."""
        _check_prompt_id(prompt_id)
        await self._request(
            bus.PromptAnswer(
                message_id=uuid.uuid4().hex, session_id=self.id, prompt_id=prompt_id, declined=True
            ),
            None,
            timeout,
        )

    async def update_session_var(
        self, variables: Mapping[str, Any], *, timeout: float = 30.0
    ) -> None:
        """Set ``session.data`` keys; recorded with this producer as the actor."""
        await self._request(
            bus.SetSessionVars(
                message_id=uuid.uuid4().hex, session_id=self.id, variables=dict(variables)
            ),
            None,
            timeout,
        )

    async def stop(self, *, timeout: float = 30.0) -> None:
        """End the session: its exit hooks run and ``session.ended`` is recorded."""
        await self._request(
            bus.CloseSession(message_id=uuid.uuid4().hex, session_id=self.id), None, timeout
        )
        await self.detach()

    async def detach(self) -> None:
        """Stop listening to the session (it goes on; nothing is sent)."""
        subs, self._subs = self._subs, []
        for sub in subs:
            with contextlib.suppress(Exception):  # a connection already closing
                await sub.unsubscribe()

    async def _request(
        self,
        message: bus.Inbound,
        on_event: EventHandler | None,
        timeout: float,
        until: str | None = None,
    ) -> Round:
        await self._subscribe()
        result = Round(message.message_id, self.id)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[message.message_id] = (result, done, on_event)
        try:
            subject = self.client.subjects.inbound(self.app, self.id)
            await self.client.js.publish(
                subject, _encode(message), headers={"Nats-Msg-Id": message.message_id}
            )
            async with asyncio.timeout(timeout):
                outcome = await done
        except TimeoutError:
            raise ClientError(
                f"no answer from app {self.app!r} within {timeout}s "
                "(is `turnlog run` serving it, relay included?)"
            ) from None
        finally:
            self._waiters.pop(message.message_id, None)
        if isinstance(outcome, bus.LiveDone) and outcome.outcome != "ok":
            raise ClientError(f"{self.app} refused the message: {outcome.error}")
        result.outcome = outcome if isinstance(outcome, str) else outcome.outcome
        return result

    async def _subscribe(self) -> None:
        if self._subs:
            return
        nc, subjects = self.client.nc, self.client.subjects
        self._subs = [
            await nc.subscribe(subjects.events(self.app, self.id), cb=self._on_event),
            await nc.subscribe(subjects.live(self.app, self.id), cb=self._on_live),
        ]

    async def _on_event(self, msg: Msg) -> None:
        event = _envelope.decode(msg.data)
        waiter = self._waiters.get(event.correlation_id or "")
        if waiter is None:
            return
        result, done, handler = waiter
        result.events.append(event)
        await _call(handler, event)
        if event.type == "session.turn_completed" and not done.done():
            done.set_result(str(event.payload.get("outcome", "")))

    async def _on_live(self, msg: Msg) -> None:
        item = _live.decode(msg.data)
        if isinstance(item, bus.LiveDone):
            waiter = self._waiters.get(item.message_id)
            if waiter and not waiter[1].done():
                waiter[1].set_result(item)
            return
        for _, _, handler in list(self._waiters.values()):
            await _call(handler, item)


async def _call(handler: EventHandler | None, item: Any) -> None:
    if handler is not None:
        result = handler(item)
        if inspect.isawaitable(result):
            await result


def _check_prompt_id(prompt_id: str) -> None:
    if not re.fullmatch(bus.PROMPT_ID.strip("^$"), prompt_id):
        raise ClientError(f"{prompt_id!r} is not a prompt id (the prompt block's prompt_id)")
