"""A session's state folded in memory from its events: what replay shows as of a point.

The same facts as the history, data and blocks projections, for one session and up to any
version, with no table involved.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from turnlog.contracts import events as ev
from turnlog.contracts.query import ReplayBlock as Block
from turnlog.contracts.query import ReplayMessage as Message
from turnlog.contracts.query import SessionState
from turnlog.projections.base import Event


def fold(
    session_id: str, events: Iterable[Event], start: SessionState | None = None
) -> SessionState:
    """The state after ``events`` (one session's, in version order), from ``start`` (the
    state before them; the session's beginning when None). ``start`` is not changed."""
    state = msgspec.structs.replace(
        start or SessionState(session_id=session_id),
        history=list(start.history) if start else [],
        data=dict(start.data) if start else {},
    )
    # insertion order = first shown; an update keeps its place
    blocks: dict[str, Block] = {b.block_id: b for b in start.blocks} if start else {}
    for e in events:
        p, at = e.payload, e.recorded_at.isoformat(timespec="microseconds")
        state.version, state.at = e.version, at
        if isinstance(p, ev.SessionStarted):
            state.app, state.user_id = p.app, p.user.id
        elif isinstance(p, ev.MessageReceived):
            state.history.append(
                Message(version=e.version, direction="in", kind="message", text=p.text, at=at)
            )
        elif isinstance(p, ev.ReplySent):
            state.history.append(
                Message(version=e.version, direction="out", kind="reply", text=p.text, at=at)
            )
        elif isinstance(p, ev.Notified):
            state.history.append(
                Message(version=e.version, direction="out", kind="notification", text=p.text, at=at)
            )
        elif isinstance(p, ev.DataSet):
            state.data[p.key] = p.value
        elif isinstance(p, ev.DataDeleted):
            state.data.pop(p.key, None)
        elif isinstance(p, ev.BlockShown):
            blocks[p.block_id] = Block(
                block_id=p.block_id, block_type=p.block_type, payload=p.payload, version=e.version
            )
        elif isinstance(p, ev.SessionEnded):
            state.ended = True
    state.blocks = list(blocks.values())
    return state
