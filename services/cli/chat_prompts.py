"""Prompts a chat's turn waits on, noticed from the blocks that show them, live or recorded."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from turnlog.contracts import bus

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


def connect_command(prompt: Prompt, user_id: str) -> str:
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
