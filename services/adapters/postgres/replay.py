"""``turnlog replay``: a session as it was at a version or a moment, from its events alone."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TextIO
from uuid import UUID

import msgspec
import structlog

from turnlog.contracts.query import SessionState
from turnlog.projections.state import fold
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.projector.writes import decode
from turnlog.services.app.log.errors import StoreError
from turnlog.services.app.log.records import Snapshot
from turnlog.services.app.sealing import KeyRing

_encode = msgspec.json.Encoder().encode
log = structlog.get_logger("turnlog.replay")


STATE_SCHEMA = 1  # the encoding of a kept state; another is ignored and refolded
KEEP_EVERY = 1000  # a replay that folds this many events keeps the state it reaches

_state = msgspec.json.Decoder(SessionState)


async def state_as_of(
    store: EventStore,
    session_id: UUID,
    *,
    to_version: int | None = None,
    at: datetime | None = None,
) -> SessionState:
    """The session after its event ``to_version``, or after its last event recorded at or
    before ``at`` (both given: whichever comes first); its latest state with neither.

    Folded from the nearest kept state at or before that point (sealed like the events;
    unusable once its user is erased) plus the events after it; a replay that folds
    ``KEEP_EVERY`` events or more keeps the state it reaches for the next one."""
    sid = str(session_id)
    if at is not None:
        if at.tzinfo is None:
            raise StoreError(f"--at needs a time zone (e.g. {at.isoformat()}+00:00)")
        row = await store.pool.fetchrow(_VERSION_AT, sid, at)
        assert row is not None  # an aggregate query has a row
        if not row["events"]:
            raise StoreError(f"no events for session {session_id}")
        if row["version"] is None:
            raise StoreError(f"session {session_id} did not exist yet at {at.isoformat()}")
        to_version = row["version"] if to_version is None else min(to_version, row["version"])
    keyring = store.keyring
    start = await _kept_state(store, keyring, sid, to_version)
    after = start.version if start is not None else 0
    records = await store.read_stream(sid, after_version=after, to_version=to_version)
    if start is None and not records:
        raise StoreError(f"no events for session {session_id}")
    last = records[-1].version if records else after
    if to_version is not None and last < to_version:
        raise StoreError(f"session {session_id} has {last} events; no version {to_version}")
    state = fold(sid, decode(await keyring.unseal(records)), start)
    if len(records) >= KEEP_EVERY and state.user_id is not None:
        await _keep(store, keyring, state)
    return state


_VERSION_AT = (
    "SELECT max(version) FILTER (WHERE recorded_at <= $2) AS version, count(*) AS events"
    " FROM turnlog_events WHERE stream_id = $1"
)


async def _kept_state(
    store: EventStore, keyring: KeyRing, stream_id: str, to_version: int | None
) -> SessionState | None:
    row = await store.pool.fetchrow(
        "SELECT version, state FROM turnlog_state_snapshots WHERE stream_id = $1"
        " AND schema_version = $2 AND ($3::integer IS NULL OR version <= $3)"
        " ORDER BY version DESC LIMIT 1",
        stream_id,
        STATE_SCHEMA,
        to_version,
    )
    if row is None:
        return None
    kept = Snapshot(
        stream_id=stream_id,
        version=row["version"],
        type="session.state",
        schema_version=STATE_SCHEMA,
        state=row["state"],
        hash=b"",
    )
    opened = await keyring.unseal_snapshot(kept)
    return None if opened is None else _state.decode(opened.state)  # None: user erased


async def _keep(store: EventStore, keyring: KeyRing, state: SessionState) -> None:
    """Keep ``state`` for later replays (a cache: failing to keep it is no error)."""
    assert state.user_id is not None
    try:
        kept = await keyring.seal_snapshot(
            state.user_id,
            Snapshot(
                stream_id=state.session_id,
                version=state.version,
                type="session.state",
                schema_version=STATE_SCHEMA,
                state=_encode(state),
                hash=b"",
            ),
        )
        await store.pool.execute(
            "INSERT INTO turnlog_state_snapshots (stream_id, version, schema_version, state)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            kept.stream_id,
            kept.version,
            STATE_SCHEMA,
            kept.state,
        )
    except Exception as e:
        log.warning("could not keep a replay state", session_id=state.session_id, error=str(e))


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
