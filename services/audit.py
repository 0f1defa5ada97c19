"""Read-only views of the log for people: a session's events in order."""

from __future__ import annotations

import sys
from uuid import UUID

import msgspec

from turnlog.services.store.eventstore import EventStore

_encode = msgspec.json.Encoder().encode


async def print_events(database_url: str, session_id: UUID, *, as_json: bool) -> int:
    store = await EventStore.connect(database_url, min_size=1, max_size=2)
    try:
        records = await store.read_stream(str(session_id))
    finally:
        await store.close()
    if not records:
        print(f"turnlog: no events for session {session_id}", file=sys.stderr)
        return 1
    out = sys.stdout
    for r in records:
        payload = msgspec.json.decode(r.payload)
        when = r.recorded_at.isoformat(timespec="microseconds")
        if as_json:
            out.write(
                _encode(
                    {
                        "position": r.position,
                        "version": r.version,
                        "type": r.type,
                        "schema_version": r.schema_version,
                        "recorded_at": when,
                        "correlation_id": r.correlation_id,
                        "causation_id": r.causation_id,
                        "actor": r.actor,
                        "payload": payload,
                    }
                ).decode()
                + "\n"
            )
        else:
            out.write(f"{r.version:>6}  {r.type:<26} {when}  {_encode(payload).decode()}\n")
    return 0
