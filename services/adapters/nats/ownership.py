"""Which of its app's partitions a runtime owns, and moving them as runtimes come and go.

A runtime owns a partition while it holds the partition's claim (a PostgreSQL advisory
lock, which dies with its connection: a killed runtime's partitions are free at once) and
counts the app's live runtimes by their membership claims. Every second or so it looks:
under its share (ceil(16 / live runtimes)) it claims free partitions; over it, it lets
some go: it stops pulling them, finishes and acknowledges what it was handed, then lets
go of the claim. Taking a partition, it forgets the sessions of it it kept in memory
(another runtime may have run their turns meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

import structlog

from turnlog.services.adapters.nats.partitioning import partition_of
from turnlog.services.adapters.nats.pull import PullLane
from turnlog.services.app.cancelling import checkpoint
from turnlog.services.app.partitions import Balance, ranges
from turnlog.services.app.ports import Claim, Claims, Metrics
from turnlog.services.app.sessions.host import SessionHost

log = structlog.get_logger("turnlog.ingress")

BALANCE_EVERY = 1.0  # seconds between two looks at the balance (± 25 %, so runtimes differ)
CLAIM_CHECK = 5.0  # seconds between checks that the claims' connection is alive


def spaces(prefix: str, app: str) -> tuple[int, int]:
    """The advisory lock spaces of the app's partitions and of its live runtimes."""

    def space(name: str) -> int:
        return zlib.crc32(f"{prefix}:{app}:{name}".encode()) - 2**31

    return space("partitions"), space("runtimes")


@dataclass
class _Owned:
    claim: Claim
    lane: PullLane
    task: asyncio.Task[None] | None = None
    leaving: bool = False


class Ownership:
    """This runtime's partitions of ``host``'s app, each pulled by a lane of its own."""

    def __init__(
        self,
        host: SessionHost,
        claims: Claims,
        prefix: str,
        lane: Callable[[int], PullLane],
        metrics: Metrics,
        *,
        ready: Callable[[], Awaitable[bool]],
    ) -> None:
        """``lane(n)``: a lane pulling partition ``n``; ``ready()``: whether partitions
        may be taken yet (the legacy lane has been drained)."""
        self.host, self.claims, self.lane, self.metrics = host, claims, lane, metrics
        self.app = host.app.name
        self.space, self.members = spaces(prefix, self.app)
        self.ready = ready
        self.balance = Balance()
        self._owned: dict[int, _Owned] = {}
        self._rng = random.Random()
        self._checked = time.monotonic()
        self._failing: str | None = None
        self._member: Claim | None = None
        self._failed: dict[int, float] = {}  # partition -> not claimed again before

    def owned(self) -> list[int]:
        """The partitions this runtime holds now (letting go of some included)."""
        return sorted(self._owned)

    def keeps(self, partition: int) -> bool:
        """Whether this runtime owns ``partition`` and is not letting it go."""
        owned = self._owned.get(partition)
        return owned is not None and not owned.leaving

    async def run(self) -> None:
        """Own a share of the partitions until cancelled; then let every one go."""
        self._member = await self._join()
        try:
            while True:
                checkpoint()
                await self._tick_patiently()
                await asyncio.sleep(BALANCE_EVERY * self._rng.uniform(0.75, 1.25))
        finally:
            self._let_go(list(self._owned), "the runtime stops")
            tasks = [o.task for o in self._owned.values() if o.task is not None]
            while tasks and not all(t.done() for t in tasks):
                with contextlib.suppress(BaseException):  # turns in progress finish
                    await asyncio.wait(tasks)
            if self._member is not None:
                with contextlib.suppress(Exception):
                    await self._member.release()

    async def _join(self) -> Claim:
        """This runtime's membership claim (a random key in the app's runtime space)."""
        while True:
            checkpoint()
            key = (self.members, self._rng.randrange(-(2**31), 2**31))
            if (claim := await self.claims.try_claim(key)) is not None:
                return claim

    async def _tick_patiently(self) -> None:
        """One look at the balance; a server away (the database, NATS) leaves everything
        as it is until the next, said once per outage."""
        try:
            if await self.ready():
                await self._tick()
        except Exception as e:
            problem = str(e) or type(e).__name__
            if problem != self._failing:
                log.warning("cannot balance partitions now", app=self.app, error=problem)
            self._failing = problem
            return
        if self._failing is not None:
            log.info("balancing partitions again", app=self.app)
            self._failing = None

    async def _tick(self) -> None:
        await self._check_claims()
        taken = await self.claims.held(self.space)
        live = len(await self.claims.held(self.members))
        keep = {p for p, o in self._owned.items() if not o.leaving}
        load = {p: o.lane.in_flight for p, o in self._owned.items()}
        moves = self.balance.moves(keep, taken | set(self._owned), live, load)
        self._let_go(list(moves.release), "other runtimes' share")
        now = time.monotonic()
        took = [p for p in moves.claim if self._failed.get(p, 0) < now and await self._take(p)]
        if took:
            owned = ranges(set(self._owned))
            log.info("partitions taken", app=self.app, partitions=ranges(set(took)), owns=owned)
            self.metrics.partitions_owned(self.app, len(self._owned))

    async def _check_claims(self) -> None:
        """Let go of partitions whose claim was lost with its connection (a database
        restart): another runtime may take them now."""
        if time.monotonic() - self._checked < CLAIM_CHECK:
            return
        self._checked = time.monotonic()
        if self._member is None or not await self._member.alive():  # counted again
            self._member = await self._join()
        lost = [p for p, o in list(self._owned.items()) if not await o.claim.alive()]
        self._let_go(lost, "their claims were lost with their database connection")

    async def _take(self, partition: int) -> bool:
        """Claim ``partition`` and pull it; False if another runtime was quicker."""
        claim = await self.claims.try_claim((self.space, partition))
        if claim is None:
            return False
        self.host.forget_idle(_in(partition))
        owned = self._owned[partition] = _Owned(claim, self.lane(partition))
        owned.task = asyncio.create_task(self._pull(partition, owned))
        return True

    async def _pull(self, partition: int, owned: _Owned) -> None:
        """Pull the partition until let go; then forget its sessions and the claim."""
        try:
            await owned.lane.run()
        except Exception as e:
            log.error(
                "pulling a partition failed; letting it go",
                app=self.app,
                partition=partition,
                error=str(e) or type(e).__name__,
            )
            self._failed[partition] = time.monotonic() + CLAIM_CHECK  # not again at once
        finally:
            self.host.forget_idle(_in(partition))
            with contextlib.suppress(Exception):  # one lost with its connection is gone
                await owned.claim.release()
            if self._owned.get(partition) is owned:
                del self._owned[partition]
            self.metrics.partitions_owned(self.app, len(self._owned))

    def _let_go(self, partitions: list[int], why: str) -> None:
        """Stop pulling ``partitions``; each one's claim goes once its turns have ended.
        Prompts waiting in their sessions end now: the answers come through them."""
        going = [p for p in partitions if p in self._owned and not self._owned[p].leaving]
        for p in going:
            self._owned[p].leaving = True
            self._owned[p].lane.stop()
        if not going:
            return
        leaving = set(going)
        self.host.prompts.stop_all(lambda session_id: partition_of(session_id) in leaving)
        log.info("letting partitions go", app=self.app, partitions=ranges(leaving), why=why)


def _in(partition: int) -> Callable[[UUID], bool]:
    return lambda session_id: partition_of(str(session_id)) == partition
