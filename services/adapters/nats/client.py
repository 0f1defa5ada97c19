"""``turnlog.Client``: talk to a turnlog app over NATS, as a message-bus producer.

client = await Client.connect("nats://127.0.0.1:4222")  # credentials=, tls_ca=, ...
session = client.session("notes", user={"id": "u1"})
round = await session.send_message("remember milk", on_event=print)
print(round.reply)
await session.stop()
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import nats
from nats.aio.client import Client as NATS

from turnlog.contracts import bus
from turnlog.contracts.events import ChannelRef, UserRef
from turnlog.domain import values
from turnlog.domain.errors import DomainError
from turnlog.services.adapters.nats import connection, files
from turnlog.services.adapters.nats.client_session import ClientError, ClientSession
from turnlog.services.adapters.nats.partitioning import transforms
from turnlog.services.adapters.nats.streams import ensure_streams
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.app.log.errors import Unavailable
from turnlog.services.settings import ConfigError, NatsSecurity, check

# ClientError and ClientSession are defined in client_session; importable from here too.
__all__ = ["Client", "ClientError", "ClientSession", "ClientUnavailable"]

_integration_answer = msgspec.json.Decoder(bus.IntegrationAnswer)
_encode = msgspec.json.Encoder().encode


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
                # a new inbound stream with its partitions (no consumer of one exists yet)
                await ensure_streams(
                    client.js, client.subjects, update=False, partitioned=transforms(nc)
                )
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
