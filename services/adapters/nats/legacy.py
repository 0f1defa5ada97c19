"""The legacy lane: the app's app-wide consumer, consumed by one runtime of the app at a
time (the one holding the app's claim). On a NATS server older than 2.10 it carries all
of the app's messages, and the app's other runtimes stand by; on a newer one, only what
was stored before the inbound stream had its partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import Callable, Coroutine
from typing import Any

import nats.js.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from turnlog.services.adapters.nats.consumers import runtime_consumer
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.app.cancelling import checkpoint, until_cancelled
from turnlog.services.app.log.errors import transient
from turnlog.services.app.ports import Claim, Claims

log = structlog.get_logger("turnlog.ingress")
_INGRESS_LOCK = 0x746C69  # advisory lock class: "tli", the app's active ingress
STANDBY_POLL = 1.0  # seconds between a standby runtime's attempts to take over
CLAIM_CHECK = 5.0  # seconds between checks that the claim's connection is alive


class _StillBound(Exception):
    """The app's consumer stays bound to another subscriber (a runtime that lost its
    claim but not its NATS subscription)."""


class LegacyLane:
    """Consumes ``<p>.in.<app>.*`` through the app's durable push consumer while this
    process holds the app's claim, handing each message to ``handle`` in a task of its
    own; ``on_stop`` runs when it stops consuming."""

    def __init__(
        self,
        js: JetStreamContext,
        subjects: Subjects,
        app: str,
        claims: Claims,
        handle: Callable[[Msg], Coroutine[Any, Any, None]],
        *,
        ack_wait: float,
        on_stop: Callable[[], object] = lambda: None,
        quiet: bool = False,
    ) -> None:
        """``quiet``: standing by is not worth a line in the log (the partitions carry
        the app's messages)."""
        self.js, self.subjects, self.app, self.claims = js, subjects, app, claims
        self.handle, self.ack_wait, self.on_stop, self.quiet = handle, ack_wait, on_stop, quiet
        self.held: Claim | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Consume the app's messages while this process holds the app's claim: one
        runtime per app and prefix consumes at a time, so a session's turns never run in
        two processes at once. The others wait, and the first to notice takes over when
        the active one stops or dies: the claim (in PostgreSQL, an advisory lock held by
        a connection of its own) goes with its holder."""
        while True:
            checkpoint()
            self.held = await self._claim()
            try:
                done = await self._consume_while_claimed()
            finally:
                await self._let_go()
            if done:
                return
            await asyncio.sleep(STANDBY_POLL)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def _let_go(self) -> None:
        held, self.held = self.held, None
        if held is not None:
            with contextlib.suppress(Exception):  # one lost with its connection is gone
                await held.release()

    def _lock_key(self) -> tuple[int, int]:
        name = f"{self.subjects.prefix}:{self.app}".encode()
        return _INGRESS_LOCK, zlib.crc32(name) - 2**31

    async def _claim(self) -> Claim:
        said = self.quiet
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
            checkpoint()
            await asyncio.sleep(CLAIM_CHECK)
            if self.held is not None and await self.held.alive():
                continue
            log.warning("the claim's database connection is gone; claiming again", app=self.app)
            await self._let_go()
            self.held = await self._reclaim()
            if self.held is None:
                return
            log.info("claimed this app's messages again", app=self.app)

    async def _reclaim(self) -> Claim | None:
        """The claim again, once the database answers; None if another runtime holds it
        by then."""
        while True:
            checkpoint()
            try:
                return await self.claims.try_claim(self._lock_key())
            except Exception as e:
                if not transient(e):
                    raise
            await asyncio.sleep(STANDBY_POLL / 2)

    async def _consume(self) -> None:
        config = runtime_consumer(self.subjects, self.app, self.ack_wait)

        async def arrived(msg: Msg) -> None:  # in arrival order: per-session FIFO
            task = asyncio.create_task(self.handle(msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        deadline = time.monotonic() + max(self.ack_wait, 10.0)
        while True:
            try:
                sub = await self.js.subscribe(
                    self.subjects.inbound_all(self.app),
                    durable=config.durable_name,
                    stream=self.subjects.stream_in,
                    cb=arrived,
                    manual_ack=True,
                    config=config,
                )
                break
            except nats.js.errors.Error as e:
                # the runtime that held the claim is gone, its subscription not yet
                if "already bound" not in str(e):
                    raise
                if time.monotonic() > deadline:
                    raise _StillBound() from e
                await asyncio.sleep(STANDBY_POLL)
        log.info("ingress started", app=self.app, consumer=config.durable_name)
        try:
            await until_cancelled()
        finally:
            await sub.unsubscribe()
            self.on_stop()
            for task in list(self._tasks):
                with contextlib.suppress(BaseException):
                    await task
