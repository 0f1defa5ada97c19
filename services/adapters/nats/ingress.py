"""Inbound messages from NATS to the runtime: validate, run the turn, then ack.

A message is acked only once its turn is on record; a redelivered or republished one
whose id is on record runs no second turn (the log accepts each message id once).
Messages are decoded and checked in ``inbound``; what cannot be handled goes to
``turnlog.dlq.<app>`` (``dead_letters``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
import zlib

import nats.js.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from turnlog.contracts import bus
from turnlog.contracts import query as q
from turnlog.domain.errors import DomainError
from turnlog.services.adapters.nats.dead_letters import (
    DEAD_LETTER_REASONS,
    DeadLetters,
    Rejected,
    dead_letter_reason,
)
from turnlog.services.adapters.nats.delivery import BusDelivery
from turnlog.services.adapters.nats.inbound import decode
from turnlog.services.adapters.nats.prompts import forward
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.app.log.errors import transient
from turnlog.services.app.ports import Claim, Claims, Metrics, NoMetrics
from turnlog.services.app.sessions.host import SessionEnded, SessionHost, SessionOfAnotherApp
from turnlog.services.app.sessions.repository import SessionNotFound
from turnlog.services.app.sessions.turn import Inbound
from turnlog.services.sdk.types import Attachment, SessionChannel, UserInfo

# DEAD_LETTER_REASONS, dead_letter_reason and Rejected are defined in dead_letters, decode
# in inbound; importable from here too.
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
_INGRESS_LOCK = 0x746C69  # advisory lock class: "tli", the app's active ingress
STANDBY_POLL = 1.0  # seconds between a standby runtime's attempts to take over
CLAIM_CHECK = 5.0  # seconds between checks that the claim's connection is alive


class _StillBound(Exception):
    """The app's consumer stays bound to another subscriber (a runtime that lost its
    claim but not its NATS subscription)."""


def runtime_consumer(subjects: Subjects, app: str, ack_wait: float) -> ConsumerConfig:
    """The app's durable consumer: the active runtime acknowledges each message once its
    turn is on record, which is what lets the inbound stream drop it."""
    return ConsumerConfig(
        durable_name=f"{subjects.prefix}-runtime-{app}",
        deliver_subject=f"{subjects.prefix}.deliver.runtime.{app}",
        filter_subject=subjects.inbound_all(app),
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=max(ack_wait, 1.0),
        max_ack_pending=1000,
        deliver_policy=DeliverPolicy.ALL,
    )


async def ensure_runtime_consumer(
    js: JetStreamContext, subjects: Subjects, app: str, ack_wait: float
) -> None:
    """Make the app's consumer if it is missing, before the app is registered and its
    router reads: from then on the inbound stream keeps the app's messages for it, while
    no runtime of it consumes too."""
    config = runtime_consumer(subjects, app, ack_wait)
    assert config.durable_name is not None
    try:
        await js.consumer_info(subjects.stream_in, config.durable_name)
    except nats.js.errors.NotFoundError:
        await js.add_consumer(subjects.stream_in, config)


class Ingress:
    """Consumes ``turnlog.in.<app>.*`` through a durable consumer and feeds the host."""

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
    ) -> None:
        self.host = host
        self.metrics = metrics or NoMetrics()
        self.js = js
        self.subjects = subjects
        self.delivery = delivery
        self.claims = claims
        self.app = host.app.name
        self.max_bytes = max_bytes
        self.ack_wait = max(ack_wait, 1.0)
        self._tasks: set[asyncio.Task[None]] = set()
        self._working: dict[int, tuple[Msg, float]] = {}  # id -> (message, arrival)
        self._held: Claim | None = None
        self.turns = 0  # turns this process ran to their end
        self._dead_letters = DeadLetters(host, js, subjects, delivery, self.metrics)
        host.on_given_up(self._dead_letters.given_up)

    async def run(self) -> None:
        """Consume the app's inbound messages while this process is the app's active
        runtime: one runtime per app and prefix consumes at a time, so a session's turns
        never run in two processes at once. Others (serving the same app for its tasks
        and schedules, or as a standby) wait, and the first to notice takes over when the
        active one stops or dies: the claim (in PostgreSQL, an advisory lock held by a
        connection of its own) goes with its holder."""
        while True:
            self._held = await self._claim()
            try:
                done = await self._consume_while_claimed()
            finally:
                await self._let_go()
            if done:
                return
            await asyncio.sleep(STANDBY_POLL)

    def health(self) -> q.RuntimeHealth:
        """Whether this runtime consumes the app's messages now, and its turns."""
        return q.RuntimeHealth(
            app=self.app,
            active=self._held is not None,
            in_flight=len(self._working),
            turns=self.turns,
        )

    async def _let_go(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            with contextlib.suppress(Exception):  # one lost with its connection is gone
                await held.release()

    def _lock_key(self) -> tuple[int, int]:
        name = f"{self.subjects.prefix}:{self.app}".encode()
        return _INGRESS_LOCK, zlib.crc32(name) - 2**31

    async def _claim(self) -> Claim:
        said = False
        while (claim := await self.claims.try_claim(self._lock_key())) is None:
            if not said:
                log.info("another runtime consumes this app's messages; standing by", app=self.app)
                said = True
            await asyncio.sleep(STANDBY_POLL)
        return claim

    async def _consume_while_claimed(self) -> bool:
        """Consume until stopped (True), or until the claim is lost or the consumer stays
        bound to a runtime that lost its claim (False: stand by again)."""
        consuming = asyncio.create_task(self._consume())
        watching = asyncio.create_task(self._watch())
        try:
            await asyncio.wait([consuming, watching], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (consuming, watching):
                task.cancel()
            results = await asyncio.gather(consuming, watching, return_exceptions=True)
        if isinstance(results[0], _StillBound):
            log.warning("the app's consumer is still bound elsewhere; standing by", app=self.app)
            return False
        if watching.done() and not watching.cancelled():
            log.error("lost the claim on this app's messages; standing by", app=self.app)
            return False
        if isinstance(results[0], BaseException) and not isinstance(
            results[0], asyncio.CancelledError
        ):
            raise results[0]
        return True

    async def _watch(self) -> None:
        """Returns when the claim is lost to another runtime. A claim lost with its
        connection (a database restart) is taken again on a new one while this goes on
        consuming: no runtime can take it while the database is away, and one that takes
        it first once it is back cannot bind the app's consumer while this one is bound
        (it stands by again), so a session's turns never run in two places."""
        while True:
            await asyncio.sleep(CLAIM_CHECK)
            if self._held is not None and await self._held.alive():
                continue
            log.warning("the claim's database connection is gone; claiming again", app=self.app)
            await self._let_go()
            self._held = await self._reclaim()
            if self._held is None:
                return
            log.info("claimed this app's messages again", app=self.app)

    async def _reclaim(self) -> Claim | None:
        """The claim again, once the database answers; None if another runtime holds it
        by then."""
        while True:
            try:
                return await self.claims.try_claim(self._lock_key())
            except Exception as e:
                if not transient(e):
                    raise
            await asyncio.sleep(STANDBY_POLL / 2)

    async def _consume(self) -> None:
        durable = f"{self.subjects.prefix}-runtime-{self.app}"

        async def arrived(msg: Msg) -> None:  # in arrival order: per-session FIFO
            task = asyncio.create_task(self._handle(msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        deadline = time.monotonic() + max(self.ack_wait, 10.0)
        while True:
            try:
                sub = await self.js.subscribe(
                    self.subjects.inbound_all(self.app),
                    durable=durable,
                    stream=self.subjects.stream_in,
                    cb=arrived,
                    manual_ack=True,
                    config=runtime_consumer(self.subjects, self.app, self.ack_wait),
                )
                break
            except nats.js.errors.Error as e:
                # the runtime that held the claim is gone, its subscription not yet
                if "already bound" not in str(e):
                    raise
                if time.monotonic() > deadline:
                    raise _StillBound() from e
                await asyncio.sleep(STANDBY_POLL)
        log.info("ingress started", app=self.app, consumer=durable)
        try:
            await self._keep_in_progress()
        finally:
            await sub.unsubscribe()
            self.host.prompts.stop_all()  # turns waiting on the user end now
            for task in list(self._tasks):
                with contextlib.suppress(BaseException):
                    await task

    async def _handle(self, msg: Msg) -> None:
        try:
            self._working[id(msg)] = (msg, time.monotonic())
            message = decode(msg.subject, msg.data, self.subjects, self.app, self.max_bytes)
            await self._dispatch(message)
        except Rejected as rejected:
            await self._dead_letters.send(msg, rejected)
        except Exception as e:
            # Not the message's fault (database or bus away): let JetStream redeliver.
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
