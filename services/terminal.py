"""``turnlog chat``: talk to an app from a terminal, or pipe messages through it."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from typing import TextIO
from uuid import UUID

import msgspec

from turnlog.services.config import Settings
from turnlog.services.repository import SessionRepository
from turnlog.services.runtime.delivery import BlockView, Chunk, Notification, Outbound, Reply
from turnlog.services.runtime.host import SessionEnded, SessionHost
from turnlog.services.runtime.turn import Inbound
from turnlog.services.sdk.app import App
from turnlog.services.sdk.types import SessionChannel, UserInfo
from turnlog.services.store.eventstore import EventStore

DIM, ITALIC, RESET, BOLD = "\033[2m", "\033[3m", "\033[0m", "\033[1m"


class TerminalDelivery:
    """Shows what the app sends. Interactive: streamed text as it streams, notifications
    dimmed. Piped: one line per reply (``app: ``) or notification (``notify: ``), with
    newlines inside written as ``\\n``."""

    def __init__(self, out: TextIO, interactive: bool) -> None:
        self.out = out
        self.interactive = interactive
        self._streaming = False

    async def deliver(self, session_id: UUID, item: Outbound) -> None:
        if self.interactive:
            self._show(item)
        else:
            self._line(item)
        self.out.flush()

    def _line(self, item: Outbound) -> None:
        if isinstance(item, Reply):
            self.out.write(f"app: {_one_line(item.text)}\n")
        elif isinstance(item, Notification):
            self.out.write(f"notify: {_one_line(item.text)}\n")
        elif isinstance(item, BlockView):
            payload = msgspec.json.encode(item.payload).decode()
            self.out.write(f"block: {item.type} {item.id} {payload}\n")

    def _show(self, item: Outbound) -> None:
        if isinstance(item, Chunk):
            if not self._streaming:
                self.out.write(f"{BOLD}app>{RESET} ")
                self._streaming = True
            self.out.write(item.text)
        elif isinstance(item, Reply):
            if self._streaming and item.streamed:
                self.out.write("\n")
            else:
                self.out.write(f"{BOLD}app>{RESET} {item.text}\n")
            self._streaming = False
        elif isinstance(item, Notification):
            self.out.write(f"{DIM}{ITALIC}  … {item.text}{RESET}\n")
        elif isinstance(item, BlockView):
            payload = msgspec.json.encode(item.payload).decode()
            self.out.write(f"{DIM}[{item.type}] {payload}{RESET}\n")


def _one_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


async def chat(
    app: App, database_url: str, settings: Settings, *, session_id: UUID | None, user_id: str
) -> int:
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    store = await EventStore.connect(database_url, min_size=1, max_size=4)
    host = SessionHost(
        app,
        SessionRepository(store, snapshot_every=settings.snapshot_every),
        TerminalDelivery(sys.stdout, interactive),
    )
    sid = session_id or uuid.uuid4()
    print(f"session {sid}", file=sys.stderr, flush=True)
    if interactive:
        print(
            f"{DIM}chatting with {app.name}; Ctrl-D to leave, "
            f"'turnlog chat ... --session {sid}' to come back{RESET}",
            file=sys.stderr,
        )
    status = 0
    try:
        await host.start()
        while (line := await _read(interactive)) is not None:
            if not line.strip():
                continue
            inbound = Inbound(
                message_id=uuid.uuid4().hex,
                text=line,
                session_id=sid,
                user=UserInfo(id=user_id),
                channel=SessionChannel(type="terminal"),
                sent_at=time.time(),
            )
            try:
                await host.handle(inbound)
            except SessionEnded as e:
                print(f"turnlog: {e}", file=sys.stderr)
                status = 1
                break
    finally:
        await host.stop()
        await store.close()
    return status


async def _read(interactive: bool) -> str | None:
    try:
        if interactive:
            return await asyncio.to_thread(input, f"{BOLD}you>{RESET} ")
        line = await asyncio.to_thread(sys.stdin.readline)
    except EOFError:
        return None
    return line.rstrip("\r\n") if line else None
