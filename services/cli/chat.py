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
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID

from turnlog.contracts import bus
from turnlog.domain.errors import TurnlogError
from turnlog.services.adapters.nats.client import Client, ClientError, ClientSession
from turnlog.services.app.rounds import Round
from turnlog.services.bootstrap.serve import Parts, serve
from turnlog.services.cli.chat_prompts import Prompt, Prompts, connect_command
from turnlog.services.cli.chat_terminal import DIM, RESET, Lines, TerminalView
from turnlog.services.sdk.app import App
from turnlog.services.settings import Settings

T = TypeVar("T")

TURN_TIMEOUT = 3600.0


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
            f"'/decline' declines, or connect it ({connect_command(prompt, self.user_id)})"
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
    server = await _serving(app, database_url, nats_url, settings)
    if server.done():
        server.result()  # raises what stopped it
        return 1
    client = await _connect(nats_url, settings)
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
        return await _converse(server, conversation)
    except AppStopped as e:
        print(f"turnlog: {e}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(Exception):
            await client.close()
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)


async def _serving(
    app: App, database_url: str, nats_url: str, settings: Settings
) -> asyncio.Task[None]:
    """The app served in-process (runtime, relay, projector), once it is ready to take
    messages or has stopped (the task is done then)."""
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
    return server


async def _connect(nats_url: str, settings: Settings) -> Client:
    security = settings.nats_security
    return await Client.connect(
        nats_url,
        prefix=settings.subject_prefix,
        credentials=security.creds,
        nkey_seed=security.nkey,
        tls_ca=security.tls_ca,
        tls_cert=security.tls_cert,
        tls_key=security.tls_key,
    )


async def _converse(server: asyncio.Task[None], conversation: Conversation) -> int:
    """Each line read sent as a message, until the input ends (0), or a message cannot be
    sent (1; a file that cannot be sent is only reported)."""
    lines, view = conversation.lines, conversation.view
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
        if not view.interactive:
            view.recorded(round_)
    return 0


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
