"""What one-off commands run on: the configured (or embedded) PostgreSQL's log, opened
once per command, with the Wiring built on it; closed when the command's work is done."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from turnlog.services.adapters.embedded.endpoints import endpoints
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.bootstrap import aio
from turnlog.services.bootstrap.wiring import Wiring
from turnlog.services.settings import Settings

T = TypeVar("T")


@contextlib.asynccontextmanager
async def open_log(database_url: str, connections: int = 2) -> AsyncIterator[EventStore]:
    """The event log at ``database_url`` (migrated), with a pool of at most
    ``connections``; closed on the way out."""
    store = await EventStore.connect(database_url, min_size=1, max_size=connections)
    try:
        yield store
    finally:
        await store.close()


def on_log(
    settings: Settings,
    work: Callable[[EventStore], Awaitable[T]],
    *,
    connections: int = 2,
) -> T:
    """Run ``work`` on the log of ``settings`` (starting the embedded PostgreSQL if that
    is the one) in an event loop of its own; what it returns."""

    async def run(url: str) -> T:
        async with open_log(url, connections) as store:
            return await work(store)

    with endpoints(settings, nats=False) as where:
        return aio.run(run(where.database_url))


def wired(store: EventStore, settings: Settings, **given: Any) -> Wiring:
    """The Wiring of a command on ``store`` (``given``: files, queue, notices)."""
    return Wiring.postgres(store, settings=settings, **given)
