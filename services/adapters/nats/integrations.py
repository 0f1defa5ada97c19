"""Integrations connected and disconnected over NATS request/reply: the producer
client's way in, since it has no database. Requests (``IntegrationCommand``) on
``<prefix>.control.integrations``, queue group ``turnlog-integrations`` (one process
serving a runtime or the API answers each), each answered with an ``IntegrationAnswer``.
Access to the subject is the authorization, as for inbound messages."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable

import msgspec
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from turnlog.contracts import bus
from turnlog.contracts.query import ErrorBody
from turnlog.domain.integrations import IntegrationError
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.app.integrations import Integrations

log = structlog.get_logger("turnlog.integrations.bus")

QUEUE = "turnlog-integrations"
_command = msgspec.json.Decoder(bus.IntegrationCommand)
_encode = msgspec.json.Encoder().encode


def _error(code: str, message: str) -> bytes:
    return _encode(bus.IntegrationAnswer(ok=False, error=ErrorBody(code=code, message=message)))


class IntegrationResponder:
    """Answers integration commands between ``start()`` and ``stop()``; at ``stop()``
    answers in progress get up to ``grace`` seconds."""

    def __init__(
        self, nc: NATS, integrations: Integrations, subjects: Subjects, *, grace: float = 5.0
    ) -> None:
        self.nc = nc
        self.integrations = integrations
        self.subject = subjects.integration_commands
        self.grace = grace
        self._sub: Subscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Subscribe; requests are answered from when this returns."""
        self._sub = await self.nc.subscribe(self.subject, queue=QUEUE, cb=self._on_command)
        await self.nc.flush()

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.grace)

    async def _on_command(self, msg: Msg) -> None:
        task = asyncio.create_task(self._reply(msg))  # commands of many users at once
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reply(self, msg: Msg) -> None:
        if not msg.reply:
            log.info("integration command without a reply subject ignored")
            return
        try:
            await self.nc.publish(msg.reply, await self.answer(msg.data))
        except Exception as e:
            log.warning("could not answer an integration command", error=repr(e))

    async def answer(self, data: bytes) -> bytes:
        """The answer to a command of ``data``; never raises but for cancellation."""
        try:
            command = _command.decode(data)
        except msgspec.DecodeError as e:
            return _error("invalid_request", f"not an IntegrationCommand: {e}")
        actor = f"producer:{command.actor}"
        try:
            if isinstance(command, bus.ConnectIntegration):
                await self.integrations.connect(
                    command.user_id,
                    command.type,
                    command.credentials,
                    actor=actor,
                    scopes=command.scopes,
                )
                changed = True
            else:
                changed = await self.integrations.disconnect(
                    command.user_id, command.type, actor=actor, reason=command.reason
                )
        except IntegrationError as e:
            return _error("invalid_request", str(e))
        except Exception as e:
            log.error(
                "integration command failed",
                user_id=command.user_id,
                type=command.type,
                exc_info=e,
            )
            return _error("internal", "internal error")
        return _encode(bus.IntegrationAnswer(ok=True, changed=changed))


class NatsNotices:
    """Integration changes announced on core NATS ``<prefix>.integrations.<user>`` (never
    the credentials), for runtimes elsewhere to refresh what their handlers see."""

    def __init__(self, nc: NATS, subjects: Subjects) -> None:
        self.nc, self.subjects = nc, subjects

    async def integration_changed(self, user_id: str, type: str, connected: bool) -> None:
        notice = bus.IntegrationChanged(user_id=user_id, type=type, connected=connected)
        try:
            await self.nc.publish(self.subjects.integrations(user_id), _encode(notice))
            await self.nc.flush(timeout=5)
        except Exception as e:  # on record all the same; runtimes learn at their next read
            log.warning(
                "could not announce an integration change",
                user_id=user_id,
                type=type,
                error=str(e) or e.__class__.__name__,
            )


Changed = Callable[[str, str, bool], Awaitable[None] | None]
_changed = msgspec.json.Decoder(bus.IntegrationChanged)


async def watch(nc: NATS, subjects: Subjects, callback: Changed) -> Subscription:
    """Call ``callback(user_id, type, connected)`` (sync or async) for every integration
    change announced under ``subjects``' prefix; the subscription is returned, to be
    unsubscribed. A notice that does not decode is logged and skipped."""

    async def on_notice(msg: Msg) -> None:
        try:
            notice = _changed.decode(msg.data)
        except msgspec.DecodeError as e:
            log.warning("an integration notice did not decode", subject=msg.subject, error=str(e))
            return
        try:
            result = callback(notice.user_id, notice.type, notice.connected)
            if inspect.isawaitable(result):
                await result
        except Exception as e:
            log.error(
                "integration notice callback failed",
                user_id=notice.user_id,
                type=notice.type,
                exc_info=e,
            )

    return await nc.subscribe(subjects.integrations_all(), cb=on_notice)
