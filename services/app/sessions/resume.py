"""Durable turns: what a turn cut off by a crash, a kill or a lost lease put on record, and
how the attempt that takes it up again is handed that record instead of doing it twice.

A resumed turn runs its handler again for the same message. The earlier attempts'
``session.effect``, ``now()``, ``uuid()`` and ``stream_reply_from`` results are handed back
in order (each must be asked for under the same name); their replies, notifications and
blocks, asked for again in the same order, are neither recorded nor delivered again, and
chunks of a stream whose reply is on record are not sent again. At the first call that
differs from the record, the rest of the record is left and the attempt goes on live.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from turnlog.contracts import events as wire
from turnlog.services.app.sessions.outbound import BlockView, Chunk, Notification, Outbound, Reply

ATTEMPTS = 5
"""Attempts a turn is given by default (the first and four resumptions) before it is
given up (``TURNLOG_TURN_ATTEMPTS``)."""

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class CutOff:
    """The open turn of a session as its attempts left it."""

    message: wire.MessageReceived
    attempts: int  # how many attempts started: 1 + the resumptions on record
    effects: tuple[tuple[str, Any], ...] = ()
    outputs: tuple[Outbound, ...] = ()


def cut_off(payloads: Sequence[wire.EventPayload]) -> CutOff:
    """The cut-off turn whose events (from its ``message_received`` on) are ``payloads``."""
    message = payloads[0]
    assert isinstance(message, wire.MessageReceived)
    attempts = 1
    effects: list[tuple[str, Any]] = []
    outputs: list[Outbound] = []
    for payload in payloads[1:]:
        if isinstance(payload, wire.TurnResumed):
            attempts = max(attempts, payload.attempt)
        elif isinstance(payload, wire.EffectRecorded):
            effects.append((payload.name, payload.result))
        elif isinstance(payload, wire.ReplySent):
            outputs.append(Reply(payload.text, payload.streamed, payload.interrupted))
        elif isinstance(payload, wire.Notified):
            outputs.append(Notification(payload.text))
        elif isinstance(payload, wire.BlockShown):
            outputs.append(BlockView(payload.block_id, payload.block_type, payload.payload))
    return CutOff(message, attempts, tuple(effects), tuple(outputs))


@dataclass(frozen=True)
class Recalled:
    """A result handed back from the record rather than obtained again; ``again``: to be
    recorded again (a re-run compares what it records with the record)."""

    result: Any
    again: bool = False


@dataclass
class Resumption:
    """The record of a cut-off turn, handed to the attempt that resumes it, in order."""

    effects: deque[tuple[str, Any]]
    outputs: deque[Outbound]
    recalled: int = 0  # effects handed back
    skipped: int = 0  # outputs not recorded or delivered again
    _held: dict[str, str] = field(default_factory=dict)  # stream id -> text not sent
    _gone_live: set[str] = field(default_factory=set)  # streams that differ from record
    _aliases: dict[str, str] = field(default_factory=dict)  # block id -> id on record

    @classmethod
    def of(cls, turn: CutOff) -> Resumption:
        return cls(deque(turn.effects), deque(turn.outputs))

    def effect(self, name: str) -> Recalled | None:
        """The recorded result of the next effect if it is ``name``; None (and nothing
        more handed back) once the attempt asks for something else."""
        if self.effects and self.effects[0][0] == name:
            self.recalled += 1
            return Recalled(self.effects.popleft()[1])
        self.effects.clear()
        return None

    def already_out(self, item: Outbound) -> bool:
        """Whether ``item`` is the next output on record (then it is not done again)."""
        if self.outputs and _same(self.outputs[0], item):
            self.outputs.popleft()
            self.skipped += 1
            return True
        self.outputs.clear()
        return False

    def block_id(self, block_id: str, block_type: str, payload: dict[str, Any]) -> str:
        """The id the record shows this block under: a block made without an id gets a
        new one in each attempt, so the next block on record of the same type and
        payload is the same block (and later updates of it go to that id)."""
        if block_id in self._aliases:
            return self._aliases[block_id]
        head = self.outputs[0] if self.outputs else None
        if (
            isinstance(head, BlockView)
            and head.id != block_id
            and head.type == block_type
            and _plain(head.payload) == _plain(payload)
        ):
            self._aliases[block_id] = head.id
            return head.id
        return block_id

    def live(self, chunk: Chunk) -> list[Chunk]:
        """What to send of ``chunk``: nothing while its stream repeats the streamed reply
        on record; once it differs, all of it so far in one chunk, then each as it comes."""
        if chunk.stream_id in self._gone_live:
            return [chunk]
        so_far = self._held.get(chunk.stream_id, "") + chunk.text
        head = self.outputs[0] if self.outputs else None
        if isinstance(head, Reply) and head.streamed and head.text.startswith(so_far):
            self._held[chunk.stream_id] = so_far
            return []
        self._gone_live.add(chunk.stream_id)
        self._held.pop(chunk.stream_id, None)
        return [Chunk(chunk.stream_id, so_far)]


def _same(recorded: Outbound, item: Outbound) -> bool:
    if isinstance(recorded, BlockView) and isinstance(item, BlockView):
        return (recorded.id, recorded.type) == (item.id, item.type) and _plain(
            recorded.payload
        ) == _plain(item.payload)
    return recorded == item


def _plain(payload: Any) -> bytes:
    try:
        return _encode(payload)
    except (TypeError, ValueError):
        return b""
