"""``turnlog chat``: talk to an app from a terminal, or pipe messages through it.

The chat serves the app in-process (runtime and relay) and talks to it as any producer
does, through the NATS ingress: the same path as every other client.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from typing import Any, TextIO
from uuid import UUID

import msgspec

from turnlog.contracts import bus
from turnlog.services.bus.client import Client, ClientError, Round
from turnlog.services.config import Settings
from turnlog.services.sdk.app import App
from turnlog.services.serve import Parts, serve

DIM, ITALIC, RESET, BOLD = "\033[2m", "\033[3m", "\033[0m", "\033[1m"
TURN_TIMEOUT = 3600.0


class TerminalView:
    """Interactive: streamed text as it streams, notifications dimmed (from live output).
    Piped: one line per recorded reply (``app: ``), notification (``notify: ``) or block
    (``block: ``), newlines inside written as ``\\n``."""

    def __init__(self, out: TextIO, interactive: bool) -> None:
        self.out = out
        self.interactive = interactive
        self._streaming = False

    def live(self, item: Any) -> None:
        if isinstance(item, bus.LiveChunk):
            if not self._streaming:
                self.out.write(f"{BOLD}app>{RESET} ")
                self._streaming = True
            self.out.write(item.text)
        elif isinstance(item, bus.LiveReply):
            if self._streaming and item.streamed:
                self.out.write("\n")
            else:
                self.out.write(f"{BOLD}app>{RESET} {item.text}\n")
            self._streaming = False
        elif isinstance(item, bus.LiveNotification):
            self.out.write(f"{DIM}{ITALIC}  … {item.text}{RESET}\n")
        elif isinstance(item, bus.LiveBlock):
            self.out.write(f"{DIM}[{item.block_type}] {_json(item.payload)}{RESET}\n")
        self.out.flush()

    def recorded(self, round_: Round) -> None:
        for event in round_.events:
            payload = event.payload
            if event.type == "session.reply_sent":
                self.out.write(f"app: {_one_line(str(payload['text']))}\n")
            elif event.type == "session.notified":
                self.out.write(f"notify: {_one_line(str(payload['text']))}\n")
            elif event.type == "session.block_shown":
                self.out.write(
                    f"block: {payload['block_type']} {payload['block_id']} "
                    f"{_json(payload['payload'])}\n"
                )
        self.out.flush()


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _one_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


async def chat(
    app: App,
    database_url: str,
    nats_url: str,
    settings: Settings,
    *,
    session_id: UUID | None,
    user_id: str,
) -> int:
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    ready = asyncio.Event()
    server = asyncio.create_task(
        serve(
            settings,
            database_url,
            nats_url,
            Parts(app=app, relay=True, projector=True),
            ready=ready,
            handle_signals=False,
        )
    )
    waiting = asyncio.create_task(ready.wait())
    await asyncio.wait([server, waiting], return_when=asyncio.FIRST_COMPLETED)
    if server.done():
        waiting.cancel()
        server.result()  # raises what stopped it
        return 1
    client = await Client.connect(nats_url, prefix=settings.subject_prefix)
    sid = str(session_id or uuid.uuid4())
    session = client.session(app.name, session_id=sid, user={"id": user_id}, channel="terminal")
    view = TerminalView(sys.stdout, interactive)
    print(f"session {sid}", file=sys.stderr, flush=True)
    if interactive:
        print(
            f"{DIM}chatting with {app.name}; '/file PATH [text]' sends a file, Ctrl-D to leave, "
            f"'turnlog chat ... --session {sid}' to come back{RESET}",
            file=sys.stderr,
        )
    try:
        while (line := await _read(interactive)) is not None:
            if not line.strip():
                continue
            text, attached = _attachments(line)
            try:
                round_ = await session.send_message(
                    text,
                    on_event=view.live if interactive else None,
                    files=attached,
                    timeout=TURN_TIMEOUT,
                )
            except ClientError as e:
                print(f"turnlog: {e}", file=sys.stderr)
                if attached:
                    continue  # a file that cannot be sent: say why, keep chatting
                return 1
            if not interactive:
                view.recorded(round_)
        return 0
    finally:
        with contextlib.suppress(Exception):
            await client.close()
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)


def _attachments(line: str) -> tuple[str, list[dict[str, str]]]:
    """``/file PATH [text]`` sends the file at PATH (uploaded to the file store) with the
    text; any other line is plain text."""
    if not line.startswith("/file "):
        return line, []
    path, _, text = line[len("/file ") :].strip().partition(" ")
    return text, [{"path": path}]


async def _read(interactive: bool) -> str | None:
    try:
        if interactive:
            return await asyncio.to_thread(input, f"{BOLD}you>{RESET} ")
        line = await asyncio.to_thread(sys.stdin.readline)
    except EOFError:
        return None
    return line.rstrip("\r\n") if line else None
