"""Inbound messages from NATS to the runtime: validate, run the turn, then ack.

A message is acked only once its turn is on record; a redelivered or republished one
whose id is on record runs no second turn (the log accepts each message id once).
Messages come through the partitions this runtime owns (``ownership``, ``pull``) and
the app's legacy lane (``legacy``); they are decoded and checked in ``inbound``; what
cannot be handled goes to ``turnlog.dlq.<app>`` (``dead_letters``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from turnlog.contracts import bus
from turnlog.contracts import query as q
from turnlog.domain.errors import DomainError
from turnlog.services.adapters.nats.consumers import (
    ensure_runtime_consumer,
    partition_durable,
    runtime_consumer,
)
from turnlog.services.adapters.nats.dead_letters import (
    DEAD_LETTER_REASONS,
    DeadLetters,
    Rejected,
    dead_letter_reason,
)
from turnlog.services.adapters.nats.delivery import BusDelivery
from turnlog.services.adapters.nats.in_order import InOrder
from turnlog.services.adapters.nats.inbound import decode
from turnlog.services.adapters.nats.legacy import CLAIM_CHECK, STANDBY_POLL, LegacyLane
from turnlog.services.adapters.nats.ownership import Ownership
from turnlog.services.adapters.nats.partitioning import partition_of
from turnlog.services.adapters.nats.prompts import forward
from turnlog.services.adapters.nats.pull import PullLane
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.app.cancelling import checkpoint
from turnlog.services.app.ports import Claims, Metrics, NoMetrics
from turnlog.services.app.sessions.host import SessionEnded, SessionHost, SessionOfAnotherApp
from turnlog.services.app.sessions.repository import SessionNotFound
from turnlog.services.app.sessions.turn import Inbound
from turnlog.services.sdk.types import Attachment, SessionChannel, UserInfo

# DEAD_LETTER_REASONS, dead_letter_reason and Rejected are defined in dead_letters, decode
# in inbound, the consumers in consumers, the lanes in legacy and pull; importable from
# here too.
__all__ = [
    "CLAIM_CHECK",
    "DEAD_LETTER_REASONS",
    "STANDBY_POLL",
    "Ingress",
    "Rejected",
    "dead_letter_reason",
    "decode",
    "ensure_runtime_consumer",
    "runtime_consumer",
]

log = structlog.get_logger("turnlog.ingress")
LEGACY_PATIENCE = 60.0  # seconds the legacy lane may stall before partitions go on anyway


class Ingress:
    """Feeds the host with the app's inbound messages: those of the partitions this
    runtime owns, and those of the app-wide legacy lane while it holds the app's claim."""

    def __init__(
        self,
        host: SessionHost,
        js: JetStreamContext,
        subjects: Subjects,
        delivery: BusDelivery,
        claims: Claims,
        *,
        max_bytes: int = 256 * 1024,
        ack_wait: float = 30.0,
        metrics: Metrics | None = None,
        partitioned: bool = False,
    ) -> None:
        """``partitioned``: the inbound stream stores messages by partition (NATS 2.10
        and later); without, the legacy lane is the only one."""
        self.host = host
        self.metrics = metrics or NoMetrics()
        self.js = js
        self.subjects = subjects
        self.delivery = delivery
        self.claims = claims
        self.app = host.app.name
        self.max_bytes = max_bytes
        self.ack_wait = max(ack_wait, 1.0)
        self.partitioned = partitioned
        self._working: dict[int, tuple[Msg, float]] = {}  # id -> (message, arrival)
        self.turns = 0  # turns this process ran to their end
        self._dead_letters = DeadLetters(host, js, subjects, delivery, self.metrics)
        self.legacy = LegacyLane(
            js, subjects, self.app, claims, self._handle, ack_wait=self.ack_wait,
            on_stop=host.prompts.stop_all, quiet=partitioned,
        )  # fmt: skip
        self.ownership = Ownership(
            host, claims, subjects.prefix, self._lane, self.metrics, ready=self._legacy_drained
        )
        self._drained = False
        self._in_order = InOrder(self.ack_wait, permanent=(Rejected,))
        self._legacy_seen: tuple[tuple[int, int], float] | None = None
        host.on_given_up(self._dead_letters.given_up)

    async def run(self) -> None:
        """Consume until cancelled: the partitions this runtime owns and the legacy lane
        (on a server without partitions, the legacy lane alone: one runtime of the app
        consumes, the others stand by); turns in progress finish first."""
        lanes = [self.legacy.run(), *([self.ownership.run()] if self.partitioned else [])]
        consuming = [asyncio.create_task(lane) for lane in lanes]
        keeping = asyncio.create_task(self._keep_in_progress())
        try:
            done, _ = await asyncio.wait([*consuming, keeping], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in consuming:
                task.cancel()
            await asyncio.gather(*consuming, return_exceptions=True)
            keeping.cancel()  # only once the turns in progress have ended
            await asyncio.gather(keeping, return_exceptions=True)

    def health(self) -> q.RuntimeHealth:
        """Whether this runtime consumes some of the app's messages now (partitions it
        owns, or the legacy lane while that carries them), and its turns."""
        partitions = self.ownership.owned()
        legacy = self.legacy.held is not None and not self._drained
        return q.RuntimeHealth(
            app=self.app,
            active=bool(partitions) or legacy,
            in_flight=len(self._working),
            turns=self.turns,
            partitions=partitions,
        )

    def _lane(self, partition: int) -> PullLane:
        nc: NATS = self.delivery.nc
        durable = partition_durable(self.subjects, self.app, partition)
        return PullLane(
            nc, self.js, self.subjects.stream_in, durable, self._handle, ack_wait=self.ack_wait
        )

    async def _legacy_drained(self) -> bool:
        """Whether the legacy lane has nothing left (then for good: the stream puts every
        new message in a partition). Until then partitions are not taken, so a session's
        older messages run before its newer ones; a lane stalled for LEGACY_PATIENCE
        (a message that fails again and again) holds them up no longer."""
        if self._drained:
            return True
        durable = runtime_consumer(self.subjects, self.app, self.ack_wait).durable_name
        assert durable is not None
        info = await self.js.consumer_info(self.subjects.stream_in, durable)
        left = (info.num_pending or 0, info.num_ack_pending or 0)
        now = time.monotonic()
        if self._legacy_seen is None or self._legacy_seen[0] != left:
            if self._legacy_seen is None and left != (0, 0):
                log.info("handling messages stored before the partitions first", app=self.app)
            self._legacy_seen = (left, now)
        stalled = now - self._legacy_seen[1] > LEGACY_PATIENCE
        if stalled:
            log.warning("the legacy lane is stalled; taking partitions anyway", app=self.app)
        self._drained = left == (0, 0) or stalled
        return self._drained

    async def _handle(self, msg: Msg) -> None:
        try:
            self._working[id(msg)] = (msg, time.monotonic())
            message = decode(msg.subject, msg.data, self.subjects, self.app, self.max_bytes)
            await self._in_order.run(_session_of(message), lambda: self._dispatch(message))
        except Rejected as rejected:
            await self._dead_letters.send(msg, rejected)
        except Exception as e:
            # Not the message's fault (database or bus away), and tried again for a while
            # already (``InOrder``), or behind one that was: let JetStream redeliver it.
            log.error(
                "handling an inbound message failed; will retry",
                subject=msg.subject,
                error=str(e) or type(e).__name__,
            )
            with contextlib.suppress(Exception):
                await msg.nak(delay=1)
            return
        finally:
            self._working.pop(id(msg), None)
        await msg.ack()

    async def _keep_in_progress(self) -> None:
        """Tell JetStream that long turns are still being worked on, so they are not
        redelivered while they run (only once this process is gone)."""
        interval = self.ack_wait / 3
        while True:
            checkpoint()
            await asyncio.sleep(interval)
            cutoff = time.monotonic() - interval
            for msg, since in list(self._working.values()):
                if since < cutoff:
                    with contextlib.suppress(Exception):
                        await msg.in_progress()

    async def _dispatch(self, message: bus.Inbound) -> None:
        if isinstance(message, bus.InboundMessage):
            await self._turn(message)
            return
        if isinstance(message, bus.PromptAnswer):
            # not queued behind the session's turn: that turn is what waits for it
            problem = await forward(self.delivery.nc, self.subjects, self.app, message)
            if problem is not None:
                raise Rejected(
                    "no_prompt", problem, message.session_id, message.message_id, on_record=False
                )
            await self.delivery.done(message.session_id, message.message_id, "ok")
            return
        sid = uuid.UUID(message.session_id)
        try:
            if isinstance(message, bus.CloseSession):
                await self.host.close(sid, reason=message.reason)
            else:
                await self.host.set_vars(
                    sid,
                    message.variables,
                    message_id=message.message_id,
                    actor=f"producer:{message.actor}",
                )
        except SessionNotFound as e:
            raise Rejected(
                dead_letter_reason(e), f"no session {sid}", None, message.message_id
            ) from None
        except (SessionEnded, SessionOfAnotherApp, DomainError) as e:
            raise Rejected(dead_letter_reason(e), str(e), str(sid), message.message_id) from None
        await self.delivery.done(str(sid), message.message_id, "ok")

    async def _turn(self, message: bus.InboundMessage) -> None:
        inbound = Inbound(
            message_id=message.message_id,
            text=message.text,
            session_id=uuid.UUID(message.session_id) if message.session_id else None,
            user=UserInfo(id=message.user.id, email=message.user.email, org_id=message.user.org_id),
            channel=SessionChannel(type=message.channel.type, name=message.channel.name),
            attachments=tuple(
                Attachment(name=a.name, content_type=a.content_type, url=a.url, size=a.size)
                for a in message.attachments
            ),
            sent_at=message.sent_at or time.time(),
        )
        started = time.monotonic()
        try:
            result = await self.host.handle(inbound)
        except (SessionEnded, SessionOfAnotherApp, DomainError) as e:
            raise Rejected(
                dead_letter_reason(e), str(e), message.session_id, message.message_id
            ) from None
        self.turns += 1
        self.metrics.turn_ended(self.app, result.outcome, time.monotonic() - started)
        started_here = result.session_id
        if message.session_id is None and self.partitioned:
            # a new session, started through the partition of "new": its next turns run
            # where its own partition is owned, perhaps not here
            if not self.ownership.keeps(partition_of(str(started_here))):
                self.host.forget_idle(lambda session_id: session_id == started_here)


def _session_of(message: bus.Inbound) -> str | None:
    """The session whose order ``message`` keeps; None for a prompt's answer, which the
    session's turn in progress waits for, and a new session's first message."""
    if isinstance(message, bus.PromptAnswer):
        return None
    return message.session_id
