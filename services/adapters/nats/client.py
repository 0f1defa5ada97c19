"""``turnlog.Client``: talk to a turnlog app over NATS, as a message-bus producer.

client = await Client.connect("nats://127.0.0.1:4222")  # credentials=, tls_ca=, ...
session = client.session("notes", user={"id": "u1"})
round = await session.send_message("remember milk", on_event=print)
print(round.reply)
await session.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from turnlog.contracts import bus
from turnlog.contracts.events import AttachmentRef, ChannelRef, UserRef
from turnlog.domain import values
from turnlog.domain.errors import DomainError, TurnlogError
from turnlog.services.adapters.nats import connection, files
from turnlog.services.adapters.nats.streams import ensure_streams
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.app.log.errors import Unavailable
from turnlog.services.app.rounds import Round
from turnlog.services.settings import ConfigError, NatsSecurity, check

EventHandler = Callable[[bus.EventEnvelope | bus.Live], Awaitable[None] | None]
_envelope = msgspec.json.Decoder(bus.EventEnvelope)
_live = msgspec.json.Decoder(bus.Live)
_integration_answer = msgspec.json.Decoder(bus.IntegrationAnswer)
_encode = msgspec.json.Encoder().encode


class ClientError(TurnlogError):
    """Raised when the runtime does not answer in time or refuses a request."""

    code = "client_error"


class ClientUnavailable(ClientError, Unavailable):
    """Raised by ``Client.connect`` when NATS cannot be reached: a ClientError, as it
    always was, and ``Unavailable`` like turnlog's own connections."""

    code = "unavailable"


class Client:
    """A connection to NATS for producing messages to turnlog apps."""

    def __init__(
        self, nc: NATS, subjects: Subjects, max_file_bytes: int = files.DEFAULT_MAX_BYTES
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.subjects = subjects
        self.files = files.FileStore(self.js, subjects.bucket_files, max_file_bytes)

    @classmethod
    async def connect(
        cls,
        nats_url: str,
        *,
        prefix: str = "turnlog",
        create_streams: bool = True,
        max_file_bytes: int = files.DEFAULT_MAX_BYTES,
        credentials: str | Path | None = None,
        nkey_seed: str | Path | None = None,
        tls_ca: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        inbox_prefix: str | None = None,
    ) -> Client:
        """Connect to NATS. The streams are created if missing (as turnlog's defaults
        have them; turnlog's processes apply the limits they are configured with), so
        messages sent before the app is served wait for it; a producer whose NATS user
        may not create them passes ``create_streams=False``.

        ``credentials`` is a .creds file (user JWT and NKey seed), ``nkey_seed`` a file
        holding an NKey user seed; user/password or a token go in the URL
        (``nats://user:pass@host:4222``, ``nats://token@host:4222``). ``tls_ca`` is the CA
        to check the server by, ``tls_cert`` and ``tls_key`` a client certificate.
        ``inbox_prefix`` (``_INBOX_<app>``) is where replies come back, for a NATS user
        allowed to receive only those."""
        security = _security(credentials, nkey_seed, tls_ca, tls_cert, tls_key, inbox_prefix)
        try:
            nc = await connection.connect(nats_url, security, inbox_prefix=inbox_prefix)
        except Exception as e:
            raise ClientUnavailable(
                f"cannot connect to NATS at {connection.redact(nats_url)}: {e}"
            ) from e
        client = cls(nc, Subjects(prefix), max_file_bytes)
        if create_streams:
            try:
                await ensure_streams(client.js, client.subjects, update=False)
            except nats.errors.Error as e:
                await nc.close()
                raise ClientError(
                    f"cannot create or check the streams ({e or type(e).__name__}); a"
                    " producer whose NATS user may not connects with create_streams=False"
                ) from e
        return client

    def session(
        self,
        app: str,
        session_id: str | None = None,
        user: Mapping[str, Any] | UserRef | None = None,
        channel: str = "bus",
    ) -> ClientSession:
        """A session of ``app``: an existing one by id, or a new one (its id is chosen
        here, so every message of it goes to the same subject)."""
        if isinstance(user, Mapping):
            user = UserRef(**user)
        if user is not None:
            try:
                values.user_id(user.id)
            except DomainError as e:
                raise ClientError(str(e)) from None
        return ClientSession(
            self,
            app,
            session_id or str(uuid.uuid4()),
            user or UserRef(id="producer"),
            ChannelRef(type=channel),
        )

    async def connect_integration(
        self,
        user_id: str,
        type: str,
        credentials: Mapping[str, Any],
        *,
        scopes: Sequence[str] = (),
        actor: str = "producer",
        timeout: float = 10.0,
    ) -> None:
        """Connect integration ``type`` (``"github"``) for ``user_id`` with
        ``credentials`` (a JSON object, e.g. ``{"token": ...}``), recorded sealed with
        actor ``producer:<actor>``; connecting again replaces them. Needs a turnlog
        process serving a runtime or the API."""
        command = bus.ConnectIntegration(
            user_id=user_id,
            type=type,
            credentials=dict(credentials),
            scopes=tuple(scopes),
            actor=actor,
        )
        await self._integration(command, timeout)

    async def disconnect_integration(
        self,
        user_id: str,
        type: str,
        *,
        reason: str = "",
        actor: str = "producer",
        timeout: float = 10.0,
    ) -> bool:
        """Disconnect ``user_id``'s integration ``type``; False if it was not connected."""
        command = bus.DisconnectIntegration(user_id=user_id, type=type, reason=reason, actor=actor)
        return await self._integration(command, timeout)

    async def _integration(self, command: bus.IntegrationCommand, timeout: float) -> bool:
        try:
            msg = await self.nc.request(
                self.subjects.integration_commands, _encode(command), timeout=timeout
            )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            raise ClientError(
                f"no answer about integration {command.type!r} within {timeout}s"
                " (is `turnlog run`, `serve runtime` or `serve api` running?)"
            ) from None
        answer = _integration_answer.decode(msg.data)
        if answer.error is not None:
            raise ClientError(f"integration {command.type!r}: {answer.error.message}")
        return answer.changed

    async def close(self) -> None:
        await self.nc.drain()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


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


def _security(
    credentials: str | Path | None,
    nkey_seed: str | Path | None,
    tls_ca: str | Path | None,
    tls_cert: str | Path | None,
    tls_key: str | Path | None,
    inbox_prefix: str | None,
) -> NatsSecurity:
    """The connection's files, checked, with ClientError naming the keyword at fault."""
    if inbox_prefix is not None and not re.fullmatch(r"[^.*> \t]+(\.[^.*> \t]+)*", inbox_prefix):
        raise ClientError(f"inbox_prefix {inbox_prefix!r} must be subject tokens, no wildcards")
    paths = (credentials, nkey_seed, tls_ca, tls_cert, tls_key)
    security = NatsSecurity(*(Path(p).expanduser() if p else None for p in paths))
    try:
        check(security, _KEYWORDS)
    except ConfigError as e:
        raise ClientError(str(e)) from None
    return security


_KEYWORDS = {
    "creds": "credentials",
    "nkey": "nkey_seed",
    "tls_ca": "tls_ca",
    "tls_cert": "tls_cert",
    "tls_key": "tls_key",
}


def _check_prompt_id(prompt_id: str) -> None:
    if not re.fullmatch(bus.PROMPT_ID.strip("^$"), prompt_id):
        raise ClientError(f"{prompt_id!r} is not a prompt id (the prompt block's prompt_id)")
