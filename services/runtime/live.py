"""A session held in memory: its aggregate, the order of its effects, their durability."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator
from datetime import UTC, datetime
from typing import Any

from turnlog.domain.session import Session as SessionAggregate
from turnlog.services.mapping import Metadata
from turnlog.services.repository import SessionRepository
from turnlog.services.runtime.delivery import Delivery, Outbound, Reply


def utcnow() -> datetime:
    return datetime.now(UTC)


class LiveSession:
    """Effects are applied to the aggregate at once (so rule violations raise where the
    handler called). Awaiting an effect commits everything applied so far, then delivers
    what is waiting, in call order; effects nobody awaits go out when the turn settles."""

    def __init__(
        self, aggregate: SessionAggregate, repo: SessionRepository, delivery: Delivery
    ) -> None:
        self.aggregate = aggregate
        self.repo = repo
        self.delivery = delivery
        self.meta = Metadata()
        self.last_active = time.monotonic()
        self.turn_replies: list[str] = []
        self._lock = asyncio.Lock()
        self._undelivered: list[Outbound] = []
        self._background: list[asyncio.Task[None]] = []

    @property
    def id(self) -> str:
        return str(self.aggregate.id)

    def record(self, command: Callable[[datetime], None], item: Outbound) -> Effect:
        """Apply ``command`` now; ``item`` is delivered once it is on record."""
        command(utcnow())
        if isinstance(item, Reply):
            self.turn_replies.append(item.text)
        self._undelivered.append(item)
        return Effect(self)

    def send_live(self, item: Outbound) -> None:
        """Deliver ``item`` (not recorded) as soon as everything before it is out."""
        self._undelivered.append(item)
        self._background.append(asyncio.get_running_loop().create_task(self.flush()))

    async def flush(self) -> None:
        """Commit what is applied, then deliver what is waiting, in order."""
        async with self._lock:
            if self.aggregate.pending_events:
                await self.repo.save(self.aggregate, self.meta)
            items, self._undelivered = self._undelivered, []
            for item in items:
                await self.delivery.deliver(self.aggregate.id, item)

    async def commit(self) -> None:
        """Everything applied so far is durable (and delivered) when this returns."""
        await self.settle()

    async def settle(self) -> None:
        """Wait for background deliveries, then flush; the first failure is raised."""
        while self._background:
            pending, self._background = self._background, []
            for result in await asyncio.gather(*pending, return_exceptions=True):
                if isinstance(result, BaseException):
                    raise result
        await self.flush()


class Effect:
    """What ``session.reply()`` and friends return: awaiting it waits until the effect is
    recorded and delivered. Not awaiting it is fine too."""

    __slots__ = ("_live",)

    def __init__(self, live: LiveSession) -> None:
        self._live = live

    def __await__(self) -> Generator[Any, None, None]:
        return self._live.flush().__await__()
