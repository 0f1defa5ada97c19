"""The chat's terminal: what it writes (live output, prompts, rounds) and the lines it reads."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, TextIO

import msgspec

from turnlog.contracts import bus
from turnlog.services.app.rounds import Round
from turnlog.services.cli.chat_prompts import Prompt, connect_command

DIM, ITALIC, RESET, BOLD = "\033[2m", "\033[3m", "\033[0m", "\033[1m"
INPUT_PROMPT = f"{BOLD}you>{RESET} "


class TerminalView:
    """Interactive: streamed text as it streams, notifications dimmed (from live output).
    Piped: one line per recorded reply (``app: ``), notification (``notify: ``) or block
    (``block: ``), newlines inside written as ``\\n``; a prompt is one ``prompt: `` line,
    written when the turn starts waiting on it."""

    def __init__(self, out: TextIO, interactive: bool) -> None:
        self.out = out
        self.interactive = interactive
        self._streaming = False
        self._reading = False  # an input prompt is on the screen
        self._interrupted = False  # output has been written below it

    def live(self, item: Any) -> None:
        if isinstance(item, bus.LiveChunk):
            if not self._streaming:
                self._below_input()
                self.out.write(f"{BOLD}app>{RESET} ")
                self._streaming = True
            self.out.write(item.text)
        elif isinstance(item, bus.LiveReply):
            if self._streaming and item.streamed:
                self.out.write("\n")
            else:
                self._below_input()
                self.out.write(f"{BOLD}app>{RESET} {item.text}\n")
            self._streaming = False
        elif isinstance(item, bus.LiveNotification):
            self._below_input()
            self.out.write(f"{DIM}{ITALIC}  … {item.text}{RESET}\n")
        elif isinstance(item, bus.LiveBlock):
            self._below_input()
            self.out.write(f"{DIM}[{item.block_type}] {_json(item.payload)}{RESET}\n")
        self.out.flush()

    def prompt(self, prompt: Prompt, user_id: str) -> None:
        p = prompt.payload
        if not self.interactive:
            if prompt.for_file:
                fields = ["file_upload", _one_line(str(p.get("message", "")))]
            else:
                fields = [
                    "integration",
                    str(p.get("integration")),
                    _one_line(str(p.get("reason", ""))),
                ]
            self.out.write("prompt: " + " ".join(f for f in fields if f) + "\n")
        else:
            self._below_input()
            if prompt.for_file:
                accept = f" ({p['accept']})" if p.get("accept") else ""
                asks = f"app asks for a file: {p.get('message', '')}{accept}"
                how = "'/file PATH' to upload"
            else:
                reason = f": {p['reason']}" if p.get("reason") else ""
                asks = f"app asks you to connect {p.get('integration')}{reason}"
                how = f"connect it ({connect_command(prompt, user_id)}) or '/decline'"
            self.out.write(f"{DIM}{BOLD}{asks} — {how}{RESET}\n")
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

    def reading(self, on: bool) -> None:
        """An input prompt has been put on the screen (or answered)."""
        self._reading, self._interrupted = on and self.interactive, False

    def back_to_input(self) -> None:
        """Output went below the input prompt still waiting: show it again."""
        if self._reading and self._interrupted:
            self.out.write(INPUT_PROMPT)
            self.out.flush()
            self._interrupted = False

    def _below_input(self) -> None:
        if self._reading and not self._interrupted:
            self.out.write("\n")
            self._interrupted = True


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _one_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


@dataclass
class Lines:
    """The lines typed or piped in, each read in a daemon thread: a read still under way
    when its turn ends is kept for the next line, and never holds up the exit."""

    interactive: bool
    view: TerminalView
    eof: bool = False
    _next: asyncio.Future[str | None] | None = field(default=None, repr=False)

    def next(self) -> asyncio.Future[str | None]:
        """The next line, once read (None at the end of input)."""
        if self._next is None:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[str | None] = loop.create_future()

            def settle(line: str | None, error: BaseException | None) -> None:
                if future.done():
                    return
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(line)

            def read() -> None:
                try:
                    line, error = _read(self.interactive), None
                except Exception as e:
                    line, error = None, e
                with contextlib.suppress(RuntimeError):  # the loop is gone: exiting
                    loop.call_soon_threadsafe(settle, line, error)

            self._next = future
            self.view.reading(True)
            threading.Thread(target=read, name="turnlog-chat-input", daemon=True).start()
        return self._next

    def take(self) -> str | None:
        """The line read (``next()`` must be done)."""
        assert self._next is not None and self._next.done()
        future, self._next = self._next, None
        self.view.reading(False)
        line = future.result()
        self.eof = self.eof or line is None
        return line

    async def read(self) -> str | None:
        if self.eof:
            return None
        await asyncio.wait({self.next()})
        return self.take()


def _read(interactive: bool) -> str | None:
    """One line of input, without its line ending; None at the end of input."""
    try:
        if interactive:
            return input(INPUT_PROMPT)
        line = sys.stdin.readline()
    except EOFError:
        return None
    return line.rstrip("\r\n") if line else None
