"""Read-only views of the log for people: a session's events in order, and whether its
hash chains hold."""

from __future__ import annotations

import sys
import time
from uuid import UUID

import msgspec

from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.verify import verify
from turnlog.services.bootstrap.commands import open_log
from turnlog.services.cli.progress import progress_bar

_encode = msgspec.json.Encoder().encode


async def print_events(database_url: str, session_id: UUID | str, *, as_json: bool) -> int:
    async with open_log(database_url) as store:
        records = await store.keyring.unseal(await store.read_stream(str(session_id)))
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


async def verify_with_progress(store: EventStore, stream_id: str | None, *, as_json: bool) -> int:
    """Verify one stream or all; print the outcome; 1 if any chain is broken."""
    started = time.monotonic()
    with progress_bar("verifying") as progress:
        report = await verify(store, stream_id, progress=progress)
    if as_json:
        print(_encode(report).decode())
    else:
        elapsed = time.monotonic() - started
        rate = report.events / elapsed if elapsed > 0 else 0.0
        print(
            f"verified {report.events:,} events in {report.streams:,} streams"
            f" in {elapsed:.1f} s ({rate:,.0f} events/s)"
        )
        for b in report.broken:
            where = f"position {b.position}" if b.position is not None else "no row"
            print(f"BROKEN {b.stream_id} version {b.version} ({where}): {b.reason}: {b.detail}")
        if not report.broken:
            print("every hash chain holds")
    return 1 if report.broken else 0
