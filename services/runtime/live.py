"""A session held in memory: its aggregate, the order of its effects, their durability."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

from turnlog.domain.session import Session as SessionAggregate
from turnlog.services.mapping import Metadata
from turnlog.services.repository import SessionRepository
from turnlog.services.runtime.delivery import Delivery, Outbound, Reply


def utcnow() -> datetime:
    return datetime.now(UTC)


class LiveSession:
    """Effects are applied to the aggregate at once (so rule violations raise where the
    handler called), then committed and delivered in call order by ``record``'s task."""

    def __init__(
        self, aggregate: SessionAggregate, repo: SessionRepository, delivery: Delivery
    ) -> None:
        self.aggregate = aggregate
        self.repo = repo
        self.delivery = delivery
        self.meta = Metadata()
        self.last_active = time.monotonic()
        self._commit_lock = asyncio.Lock()
        self._outstanding: list[asyncio.Task[None]] = []
        self.turn_replies: list[str] = []

    @property
    def id(self) -> str:
        return str(self.aggregate.id)

    def record(
        self, command: Callable[[datetime], None], item: Outbound | None
    ) -> asyncio.Task[None]:
        """Apply ``command`` now; commit, then deliver ``item``, in the background."""
        command(utcnow())
        if isinstance(item, Reply):
            self.turn_replies.append(item.text)
        return self.send(item, commit=True)

    def send(self, item: Outbound | None, *, commit: bool = False) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._commit_and_deliver(item, commit))
        self._outstanding.append(task)
        return task

    async def _commit_and_deliver(self, item: Outbound | None, commit: bool) -> None:
        async with self._commit_lock:
            if commit:
                await self.repo.save(self.aggregate, self.meta)
            if item is not None:
                await self.delivery.deliver(self.aggregate.id, item)

    async def commit(self) -> None:
        """Everything applied so far is durable when this returns."""
        await self.settle()
        async with self._commit_lock:
            await self.repo.save(self.aggregate, self.meta)

    async def settle(self) -> None:
        """Wait for every effect issued so far; the first failure is raised."""
        while self._outstanding:
            pending, self._outstanding = self._outstanding, []
            results = await asyncio.gather(*pending, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
