"""What the runtime hands to the user's transport, and the port it hands it through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID


@dataclass(frozen=True)
class Reply:
    text: str
    streamed: bool = False
    interrupted: bool = False


@dataclass(frozen=True)
class Notification:
    text: str


@dataclass(frozen=True)
class Chunk:
    """A piece of a streaming reply: live only, never recorded on its own."""

    stream_id: str
    text: str


@dataclass(frozen=True)
class BlockView:
    id: str
    type: str
    payload: dict[str, Any]


Outbound = Reply | Notification | Chunk | BlockView


class Delivery(Protocol):
    """Sends what a session shows to wherever its user is. Called in effect order; a
    recorded effect is delivered only once it is durable."""

    async def deliver(self, session_id: UUID, item: Outbound) -> None: ...


class NoDelivery:
    """Delivery to nowhere: for batch runs and benchmarks."""

    async def deliver(self, session_id: UUID, item: Outbound) -> None:
        return None


class Collector:
    """Keeps everything delivered, per session, in order: for tests and tools."""

    def __init__(self) -> None:
        self.items: dict[UUID, list[Outbound]] = {}

    async def deliver(self, session_id: UUID, item: Outbound) -> None:
        self.items.setdefault(session_id, []).append(item)

    def of(self, session_id: UUID, kind: type | None = None) -> list[Any]:
        items = self.items.get(session_id, [])
        return [i for i in items if kind is None or isinstance(i, kind)]
