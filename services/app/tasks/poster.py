"""What tasks do to sessions: replies, notifications and blocks, and the task's card
following its status. All of it goes through the session's host, between the session's
turns, so a task never writes into a turn in progress."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any
from uuid import UUID

import structlog

from turnlog.services.app.log.errors import ConcurrencyConflict, StoreError
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.sessions.host import SessionHost, TurnOpenElsewhere
from turnlog.services.app.sessions.live import LiveSession
from turnlog.services.app.sessions.outbound import BlockView, Notification, Reply

Effect = Reply | Notification | BlockView

log = structlog.get_logger("turnlog.tasks")

WAIT_FOR_TURN = 60.0  # seconds a task waits for a turn open in another process to end
RETRY_EVERY = 0.1


class SessionBusy(StoreError):
    """Raised when a task's effect on a session waited too long for a turn that another
    process has open on it."""

    code = "session_busy"


class SessionPoster:
    """Records tasks' effects on sessions through ``host``. A turn this process runs is
    waited for (the session's lock); one open in another process is waited for up to
    ``wait`` seconds; a conflict with another writer is resolved by reading again."""

    def __init__(self, host: SessionHost, wait: float = WAIT_FOR_TURN) -> None:
        self.host, self.wait = host, wait

    async def integrations(self, user_id: str) -> Mapping[str, Any]:
        """``user_id``'s connected integrations, as the host gives them to sessions."""
        credentials = self.host.credentials
        return await credentials(user_id) if credentials is not None else {}

    async def post(self, session_id: str, meta: Metadata, item: Effect) -> None:
        def apply(live: LiveSession) -> None:
            agg = live.aggregate
            if isinstance(item, Reply):
                live.record(lambda at: agg.reply(item.text, at=at), item)
            elif isinstance(item, Notification):
                live.record(lambda at: agg.notify(item.text, at=at), item)
            else:
                block = item
                live.record(
                    lambda at: agg.show_block(block.id, block.type, block.payload, at=at), block
                )

        await self._outside(session_id, meta, apply)

    async def update_card(
        self, session_id: str, task_id: str, fields: dict[str, Any], meta: Metadata
    ) -> None:
        """Update the task's card (block ``task:<task_id>``) with ``fields``, if the
        session shows it."""
        block_id = f"task:{task_id}"

        def apply(live: LiveSession) -> None:
            agg = live.aggregate
            shown = agg.blocks.get(block_id)
            if shown is None:
                return
            payload = {**shown["payload"], **fields}
            if payload == shown["payload"]:
                return
            kind = shown["type"]
            live.record(
                lambda at: agg.show_block(block_id, kind, payload, at=at),
                BlockView(block_id, kind, payload),
            )

        await self._outside(session_id, meta, apply)

    async def _outside(
        self, session_id: str, meta: Metadata, apply: Callable[[LiveSession], None]
    ) -> None:
        sid = UUID(session_id)
        deadline = time.monotonic() + self.wait
        conflicts = 0
        while True:
            try:
                async with self.host.outside_turn(sid, meta) as live:
                    apply(live)
                return
            except ConcurrencyConflict:
                conflicts += 1
                if conflicts > 20:
                    raise
            except TurnOpenElsewhere as e:
                if time.monotonic() >= deadline:
                    msg = f"session {session_id} kept a turn open elsewhere for {self.wait:g} s"
                    raise SessionBusy(msg) from e
                await asyncio.sleep(RETRY_EVERY)


class CardFollower:
    """Keeps a task's card in step with its record, in the background: each change
    replaces the one not yet shown, so a card waiting for a long turn catches up at once
    with the latest state."""

    def __init__(
        self, poster: SessionPoster | None, session_id: str | None, task_id: str, meta: Metadata
    ) -> None:
        self.poster, self.session_id, self.task_id, self.meta = poster, session_id, task_id, meta
        self._latest: dict[str, Any] | None = None
        self._loop: asyncio.Task[None] | None = None

    def follow(self, fields: dict[str, Any]) -> None:
        if self.poster is None or self.session_id is None:
            return
        self._latest = fields
        if self._loop is None or self._loop.done():
            self._loop = asyncio.create_task(self._run())

    async def drain(self) -> None:
        """Wait until the card shows the latest state given."""
        while self._loop is not None and not self._loop.done():
            await asyncio.shield(self._loop)

    async def _run(self) -> None:
        assert self.poster is not None and self.session_id is not None
        while self._latest is not None:
            fields, self._latest = self._latest, None
            try:
                await self.poster.update_card(self.session_id, self.task_id, fields, self.meta)
            except Exception as e:
                log.warning(
                    "updating a task card failed",
                    task_id=self.task_id,
                    session_id=self.session_id,
                    error=str(e) or type(e).__name__,
                )
