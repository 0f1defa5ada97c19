"""What a producer gets back for a message: the events recorded for its turn."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from turnlog.contracts import bus


@dataclass
class Round:
    """One message and everything recorded for it: the events of its turn, in order."""

    message_id: str
    session_id: str
    events: list[bus.EventEnvelope] = field(default_factory=list)
    outcome: str = ""
    prompt: dict[str, Any] | None = None
    """A prompt the turn waits on (the payload of its block: ``prompt_id``, ``message``,
    ...), when the round was handed back before the turn completed; else None."""

    @property
    def reply(self) -> str:
        """The full text of the turn's replies (joined with blank lines)."""
        texts = [
            str(e.payload.get("text", "")) for e in self.events if e.type == "session.reply_sent"
        ]
        return "\n\n".join(texts)
