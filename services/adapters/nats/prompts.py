"""Answers to prompts across runtime processes.

A prompt waits in the process running its turn, but its answer (an upload, a decline)
may be consumed from the inbound stream by any runtime of the app. So every runtime
listens on ``<prefix>.prompt.<app>.*`` and replies only for the prompts it holds; the
runtime that consumed the answer forwards it there as a request. No reply: no runtime
holds that prompt (it timed out, was answered, or its process stopped).
"""

from __future__ import annotations

import msgspec
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import BadSubjectError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from turnlog.contracts import bus
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.app.sessions.prompts import Answer, Prompts

log = structlog.get_logger("turnlog.prompts")
_decode = msgspec.json.Decoder(bus.PromptAnswer).decode
_encode = msgspec.json.Encoder().encode


def to_answer(message: bus.PromptAnswer) -> Answer:
    if message.declined:
        return Answer("declined")
    return Answer("file", file=message.file)


class PromptListener:
    """Resolves this process's prompts with answers forwarded by any runtime."""

    def __init__(self, nc: NATS, subjects: Subjects, app: str, prompts: Prompts) -> None:
        self.nc, self.subjects, self.app, self.prompts = nc, subjects, app, prompts

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(self.subjects.prompt(self.app, "*"), cb=self._on)

    async def stop(self) -> None:
        await self._sub.unsubscribe()

    async def _on(self, msg: Msg) -> None:
        try:
            message = _decode(msg.data)
        except msgspec.DecodeError:
            return
        if message.prompt_id not in self.prompts:
            return  # another runtime's, or nobody's: stay silent
        problem = self.prompts.answer(message.session_id, message.prompt_id, to_answer(message))
        await msg.respond(_encode({"ok": problem is None, "error": problem}))


async def forward(nc: NATS, subjects: Subjects, app: str, message: bus.PromptAnswer) -> str | None:
    """Hand ``message`` to the runtime holding its prompt; None when it took it, else why
    not."""
    try:
        reply = await nc.request(
            subjects.prompt(app, message.prompt_id), _encode(message), timeout=5.0
        )
    except (NoRespondersError, NatsTimeout, BadSubjectError):
        return f"no prompt {message.prompt_id} is waiting in session {message.session_id}"
    result = msgspec.json.decode(reply.data)
    return None if result.get("ok") else str(result.get("error"))
