"""``turnlog replay``: a session as it was at a version or a moment, from its events alone."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TextIO
from uuid import UUID

import msgspec

from turnlog.contracts.query import SessionState
from turnlog.projections.state import fold
from turnlog.services.projector.writes import decode
from turnlog.services.sealing import KeyRing
from turnlog.services.store.errors import StoreError
from turnlog.services.store.eventstore import EventStore

_encode = msgspec.json.Encoder().encode


async def state_as_of(
    store: EventStore,
    session_id: UUID,
    *,
    to_version: int | None = None,
    at: datetime | None = None,
) -> SessionState:
    """The session after its event ``to_version``, or after its last event recorded at or
    before ``at`` (both given: whichever comes first); its latest state with neither."""
    records = await store.read_stream(str(session_id), to_version=to_version)
    if not records:
        raise StoreError(f"no events for session {session_id}")
    if to_version is not None and records[-1].version < to_version:
        raise StoreError(
            f"session {session_id} has {records[-1].version} events; no version {to_version}"
        )
    if at is not None:
        if at.tzinfo is None:
            raise StoreError(f"--at needs a time zone (e.g. {at.isoformat()}+00:00)")
        records = [r for r in records if r.recorded_at <= at]
        if not records:
            raise StoreError(f"session {session_id} did not exist yet at {at.isoformat()}")
    return fold(str(session_id), decode(await KeyRing(store).unseal(records)))


def render(state: SessionState, out: TextIO = sys.stdout, *, as_json: bool = False) -> None:
    if as_json:
        out.write(_encode(state).decode() + "\n")
        return
    ended = ", ended" if state.ended else ""
    out.write(
        f"session {state.session_id} (app {state.app}, user {state.user_id}{ended})"
        f" as of version {state.version}, {state.at}\n"
    )
    out.write("history:\n")
    for m in state.history:
        who = "user" if m.direction == "in" else "app" if m.kind == "reply" else "notify"
        out.write(f"  [{m.version}] {who}: {m.text}\n")
    out.write("data:\n")
    for key, value in state.data.items():
        out.write(f"  {key} = {_encode(value).decode()}\n")
    out.write("blocks:\n")
    for b in state.blocks:
        out.write(f"  {b.block_id} ({b.block_type}, v{b.version}): {_encode(b.payload).decode()}\n")
