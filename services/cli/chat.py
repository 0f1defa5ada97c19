"""``turnlog chat``: talk to an app from a terminal, or pipe messages through it.

The chat serves the app in-process (runtime and relay) and talks to it as any producer
does, through the NATS ingress: the same path as every other client. While a turn waits
on a prompt (``prompt_file``, ``prompt_integration``), the chat shows it and reads the
answer: ``/file PATH`` uploads a file, ``/decline`` declines an integration.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar
from uuid import UUID

import msgspec

from turnlog.contracts import bus
from turnlog.domain.errors import TurnlogError
from turnlog.services.adapters.nats.client import Client, ClientError, ClientSession
from turnlog.services.app.rounds import Round
from turnlog.services.bootstrap.serve import Parts, serve
from turnlog.services.sdk.app import App
from turnlog.services.settings import Settings

T = TypeVar("T")

DIM, ITALIC, RESET, BOLD = "\033[2m", "\033[3m", "\033[0m", "\033[1m"
TURN_TIMEOUT = 3600.0
INPUT_PROMPT = f"{BOLD}you>{RESET} "
PROMPT_BLOCKS = ("file_upload", "integration")


@dataclass
class Prompt:
    """A prompt a handler waits on, as its block shows it."""

    prompt_id: str
    block_type: str  # file_upload or integration
    payload: dict[str, Any]

    @property
    def for_file(self) -> bool:
        return self.block_type == "file_upload"


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
                how = f"connect it ({_connect_command(prompt, user_id)}) or '/decline'"
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


def _connect_command(prompt: Prompt, user_id: str) -> str:
    return f"turnlog integrations connect {user_id} {prompt.payload.get('integration')} --token …"


class Prompts:
    """The prompts the running turn waits on, noticed from its blocks (live, or recorded:
    whichever comes first). Each is shown once, in the order noticed; the recorded one
    always comes before the turn's completion, so piped output is in a defined order."""

    def __init__(self) -> None:
        self.shown: asyncio.Queue[Prompt] = asyncio.Queue()  # noticed, not yet written
        self.changed = asyncio.Event()
        self._waiting: dict[str, Prompt] = {}
        self._seen: set[str] = set()

    def notice(self, item: bus.EventEnvelope | bus.Live) -> None:
        block_type: Any
        payload: Any
        if isinstance(item, bus.LiveBlock):
            block_type, payload = item.block_type, item.payload
        elif isinstance(item, bus.EventEnvelope) and item.type == "session.block_shown":
            block_type, payload = item.payload.get("block_type"), item.payload.get("payload")
        else:
            return
        if block_type not in PROMPT_BLOCKS or not isinstance(payload, dict):
            return
        prompt_id = payload.get("prompt_id")
        if not isinstance(prompt_id, str):
            return
        if payload.get("status") != "waiting":  # received, connected, declined, timed out
            self._seen.add(prompt_id)
            self.answered(prompt_id)
        elif prompt_id not in self._seen:
            self._seen.add(prompt_id)
            prompt = Prompt(prompt_id, str(block_type), payload)
            self._waiting[prompt_id] = prompt
            self.shown.put_nowait(prompt)
            self.changed.set()

    def answered(self, prompt_id: str) -> None:
        if self._waiting.pop(prompt_id, None) is not None:
            self.changed.set()

    def current(self) -> Prompt | None:
        """The oldest prompt still waiting: the one the next line answers."""
        return next(iter(self._waiting.values()), None)


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


@dataclass
class Conversation:
    """Turns of one session: each message sent, and the prompts of its turn answered
    from the lines read while it runs."""

    session: ClientSession
    view: TerminalView
    lines: Lines
    user_id: str
    prompts: Prompts = field(default_factory=Prompts)

    def on_event(self, item: bus.EventEnvelope | bus.Live) -> None:
        if self.view.interactive:
            self.view.live(item)
        self.prompts.notice(item)

    async def send(self, text: str, files: list[dict[str, str]]) -> Round:
        turn = asyncio.create_task(
            self.session.send_message(
                text, on_event=self.on_event, files=files, timeout=TURN_TIMEOUT
            )
        )
        try:
            await self._until_done(turn)
        finally:
            if not turn.done():
                turn.cancel()
                await asyncio.gather(turn, return_exceptions=True)
        return turn.result()

    async def _until_done(self, turn: asyncio.Task[Round]) -> None:
        """Show the turn's prompts and answer them from the lines read, until it is done."""
        while True:
            while not self.prompts.shown.empty():
                self.view.prompt(self.prompts.shown.get_nowait(), self.user_id)
            if turn.done():
                self.view.back_to_input()
                return
            prompt = self.prompts.current()
            self.prompts.changed.clear()
            changed = asyncio.create_task(self.prompts.changed.wait())
            reading = self.lines.next() if prompt is not None and not self.lines.eof else None
            waits: set[asyncio.Future[Any]] = {turn, changed}
            if reading is not None:
                waits.add(reading)
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
            if prompt is None or reading is None or not reading.done() or turn.done():
                continue  # a line read as the turn ends is the next message
            line = self.lines.take()
            if line is None:
                print(
                    "turnlog: end of input; the prompt waits until the turn ends",
                    file=sys.stderr,
                    flush=True,
                )
            elif line.strip():
                await self._answer(prompt, line.strip())

    async def _answer(self, prompt: Prompt, line: str) -> None:
        try:
            if prompt.for_file and line.startswith("/file "):
                _, files = _attachments(line)
                await self.session.upload(prompt.prompt_id, files[0])
            elif not prompt.for_file and line == "/decline":
                await self.session.decline(prompt.prompt_id)
            else:
                print(f"turnlog: {self._expected(prompt)}", file=sys.stderr, flush=True)
                return
        except ClientError as e:
            print(f"turnlog: {e}", file=sys.stderr, flush=True)
            return
        self.prompts.answered(prompt.prompt_id)

    def _expected(self, prompt: Prompt) -> str:
        if prompt.for_file:
            return "the app waits for a file: '/file PATH' uploads it"
        return (
            f"the app waits for {prompt.payload.get('integration')} to be connected: "
            f"'/decline' declines, or connect it ({_connect_command(prompt, self.user_id)})"
        )


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
    security = settings.nats_security
    client = await Client.connect(
        nats_url,
        prefix=settings.subject_prefix,
        credentials=security.creds,
        nkey_seed=security.nkey,
        tls_ca=security.tls_ca,
        tls_cert=security.tls_cert,
        tls_key=security.tls_key,
    )
    sid = str(session_id or uuid.uuid4())
    session = client.session(app.name, session_id=sid, user={"id": user_id}, channel="terminal")
    view = TerminalView(sys.stdout, interactive)
    lines = Lines(interactive, view)
    conversation = Conversation(session, view, lines, user_id)
    print(f"session {sid}", file=sys.stderr, flush=True)
    if interactive:
        print(
            f"{DIM}chatting with {app.name}; '/file PATH [text]' sends a file (or answers a "
            f"file prompt), '/decline' declines an integration prompt, Ctrl-D to leave, "
            f"'turnlog chat ... --session {sid}' to come back{RESET}",
            file=sys.stderr,
        )
    try:
        while (line := await _while_serving(server, lines.read())) is not None:
            if not line.strip():
                continue
            text, attached = _attachments(line)
            try:
                round_ = await _while_serving(server, conversation.send(text, attached))
            except AppStopped as e:
                print(f"turnlog: {e}", file=sys.stderr)
                return 1
            except ClientError as e:
                print(f"turnlog: {e}", file=sys.stderr)
                if attached:
                    continue  # a file that cannot be sent: say why, keep chatting
                return 1
            if not interactive:
                view.recorded(round_)
        return 0
    except AppStopped as e:
        print(f"turnlog: {e}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(Exception):
            await client.close()
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)


class AppStopped(TurnlogError):
    """Raised when the app a chat serves in-process stops: the chat ends, never hangs."""

    code = "app_stopped"


async def _while_serving(server: asyncio.Task[None], work: Awaitable[T]) -> T:
    """``work``'s result, unless ``server`` (serving the app) ends first: AppStopped."""
    job = asyncio.ensure_future(work)
    await asyncio.wait([job, server], return_when=asyncio.FIRST_COMPLETED)
    if job.done():
        return job.result()
    job.cancel()
    await asyncio.gather(job, return_exceptions=True)
    error = None if server.cancelled() else server.exception()
    why = f": {error}" if error is not None else ""
    raise AppStopped(f"the app stopped serving{why}; leaving the chat")


def _attachments(line: str) -> tuple[str, list[dict[str, str]]]:
    """``/file PATH [text]`` sends the file at PATH (uploaded to the file store) with the
    text; any other line is plain text."""
    if not line.startswith("/file "):
        return line, []
    path, _, text = line[len("/file ") :].strip().partition(" ")
    return text, [{"path": path}]


def _read(interactive: bool) -> str | None:
    """One line of input, without its line ending; None at the end of input."""
    try:
        if interactive:
            return input(INPUT_PROMPT)
        line = sys.stdin.readline()
    except EOFError:
        return None
    return line.rstrip("\r\n") if line else None
