"""Support copilot: a session-aware assistant.

Builds the model prompt from the conversation with ``session.chat_messages``, shows a
status notification while the model works, and streams its answer. The model client
here is an offline stand-in with the same call shape as an OpenAI-style client
(``client.chat.completions.create(...)``), so the app runs with no network or key.

    turnlog chat examples/support_copilot.py
    > My invoice is wrong
    > stream: explain the refund policy
    > sync my mailbox
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import turnlog as cpsl


@dataclass
class _Delta:
    content: str | None


@dataclass
class _Choice:
    message: _Delta | None = None
    delta: _Delta | None = None


@dataclass
class _Completion:
    choices: list[_Choice] = field(default_factory=list)


class _Completions:
    """Answers from a canned script, word by word when asked to stream."""

    async def create(
        self, *, model: str, messages: list[dict[str, str]], stream: bool = False
    ) -> Any:
        question = messages[-1]["content"] if messages else ""
        earlier = sum(1 for m in messages if m["role"] == "user") - 1
        answer = (
            f"[{model}] You asked: {question!r}. I can see {earlier} earlier "
            "message(s) from you. Check the billing page, then reply here if it persists."
        )
        if stream:
            return self._stream(answer)
        await asyncio.sleep(0.01)
        return _Completion([_Choice(message=_Delta(answer))])

    async def _stream(self, answer: str) -> AsyncIterator[_Completion]:
        for word in answer.split(" "):
            await asyncio.sleep(0.005)
            yield _Completion([_Choice(delta=_Delta(word + " "))])


@dataclass
class _Chat:
    completions: _Completions = field(default_factory=_Completions)


@dataclass
class FakeModelClient:
    chat: _Chat = field(default_factory=_Chat)


client = FakeModelClient()
app = cpsl.App("support-copilot")
SYSTEM = {"role": "system", "content": "You are a support operations copilot."}


@app.message()
async def handle(session: cpsl.Session, msg: cpsl.Message) -> None:
    text = msg.text or ""
    if "sync" in text.lower():
        await session.show_task("mailbox-sync", message="Mailbox sync started")
        return

    await session.notify("Thinking...")
    if text.lower().startswith("stream:"):
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[SYSTEM, *session.chat_messages(msg)], stream=True
        )
        await session.stream_reply_from(stream)
        return

    response = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[SYSTEM, *session.chat_messages(msg)]
    )
    await session.reply(response.choices[0].message.content or "No response.")
