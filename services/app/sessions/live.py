"""A session held in memory: its aggregate, the order of its effects, their durability."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from turnlog.domain.session import Session as SessionAggregate
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.ports import Clock, system_clock
from turnlog.services.app.sessions.outbound import Chunk, Delivery, Outbound, Reply
from turnlog.services.app.sessions.prompts import Prompts
from turnlog.services.app.sessions.resume import Recalled, Resumption


def utcnow() -> datetime:
    return datetime.now(UTC)


Credentials = Callable[[str], Awaitable[Mapping[str, Any]]]
"""A user's connected integrations (type -> credentials)."""


async def _no_credentials(user_id: str) -> Mapping[str, Any]:
    return {}


class Saver(Protocol):
    """Where a live session's events go: the repository, or a re-run's collector."""

    async def save(self, session: SessionAggregate, meta: Metadata) -> object: ...


class RecordedEffects(Protocol):
    """During a re-run: the results recorded by the original turn, handed out in order
    instead of calling the outside again."""

    def take(self, name: str) -> Any:
        """The next recorded result, which must be of effect ``name``."""
        ...

    def prompt(self, kind: str) -> tuple[str, str, Any]:
        """The next recorded prompt of ``kind``: its id, how it ended ("received" or
        "timed_out") and what was received (a file reference)."""
        ...

    def refuse(self, what: str) -> BaseException:
        """The error that stops a re-run which reached something it cannot re-run."""
        ...


class LiveSession:
    """Effects are applied to the aggregate at once (so rule violations raise where the
    handler called) and go out in call order: committed, then delivered, by a background
    flush. A handler is never held up by the database; effects applied close together,
    and the end of a quick turn, share one commit."""

    def __init__(
        self,
        aggregate: SessionAggregate,
        repo: Saver,
        delivery: Delivery,
        replaying: RecordedEffects | None = None,
        prompts: Prompts | None = None,
        credentials: Credentials | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.aggregate = aggregate
        self.clock = clock
        self.repo = repo
        self.delivery = delivery
        self.replaying = replaying
        self.resuming: Resumption | None = None  # while a cut-off turn is taken up again
        self.prompts = prompts or Prompts()
        self.credentials = credentials or _no_credentials
        self.meta = Metadata()
        self.last_active = time.monotonic()
        self.turn_replies: list[str] = []
        self._lock = asyncio.Lock()
        self._undelivered: list[Outbound] = []
        self._background: list[asyncio.Task[None]] = []
        self._scheduled = False

    @property
    def id(self) -> str:
        return str(self.aggregate.id)

    def record(self, command: Callable[[datetime], None], item: Outbound) -> Effect:
        """Apply ``command`` now; ``item`` is delivered once it is on record. In a
        resumed turn, an ``item`` an earlier attempt put on record is neither."""
        repeated = self.resuming is not None and self.resuming.already_out(item)
        if not repeated:
            command(self.clock())
        if isinstance(item, Reply):
            self.turn_replies.append(item.text)
        if not repeated:
            self._undelivered.append(item)
            self._schedule()
        return Effect()

    def apply(self, command: Callable[[datetime], None]) -> None:
        """Apply ``command`` now and record it with the next flush (nothing to deliver)."""
        command(self.clock())
        self._schedule()

    def send_live(self, item: Outbound) -> None:
        """Deliver ``item`` (not recorded) as soon as everything before it is out."""
        if self.resuming is not None and isinstance(item, Chunk):
            self._undelivered += self.resuming.live(item)
        else:
            self._undelivered.append(item)
        self._schedule()

    def block_id(self, block_id: str, block_type: str, payload: dict[str, Any]) -> str:
        """The id to show a block under: its own, or in a resumed turn the id an earlier
        attempt showed the same block under."""
        if self.resuming is None:
            return block_id
        return self.resuming.block_id(block_id, block_type, payload)

    def recall(self, name: str) -> Recalled | None:
        """The recorded result of effect ``name`` when this call's result is on record
        already (a re-run, or a resumed turn repeating its earlier attempt); None when
        it is to be obtained now."""
        if self.replaying is not None:
            return Recalled(self.replaying.take(name), again=True)
        if self.resuming is not None:
            return self.resuming.effect(name)
        return None

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._background.append(asyncio.get_running_loop().create_task(self._flush_soon()))

    async def _flush_soon(self) -> None:
        self._scheduled = False  # what is applied from now on needs a flush of its own
        await self.flush()

    async def flush(self) -> None:
        """Commit what is applied, then deliver what is waiting, in order."""
        async with self._lock:
            if self.aggregate.pending_events:
                await self.repo.save(self.aggregate, self.meta)
            items, self._undelivered = self._undelivered, []
            for item in items:
                await self.delivery.deliver(self.aggregate.id, item)

    async def settle(self) -> None:
        """Everything applied so far is durable and delivered when this returns (after
        the background flushes; the first failure is raised)."""
        while self._background:
            pending, self._background = self._background, []
            for result in await asyncio.gather(*pending, return_exceptions=True):
                if isinstance(result, BaseException):
                    raise result
        await self.flush()


class Effect:
    """What ``session.reply()`` and friends return. The effect has already taken place;
    it is recorded and delivered in the background, in call order. Awaiting it is
    allowed and returns at once; ``await session.flush()`` waits until all is on record."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        yield from ()
