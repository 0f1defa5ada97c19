"""The event log's rows: columns, append and tip statements, events to rows and back."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from turnlog.services.app.log.records import NewEvent, RecordedEvent

COLUMNS = (
    "position, stream_id, version, type, schema_version, payload, recorded_at,"
    " correlation_id, causation_id, actor, prev_hash, hash"
)
APPEND = "SELECT turnlog_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
LAST = "SELECT version, hash FROM turnlog_events WHERE stream_id = $1 ORDER BY version DESC LIMIT 1"
RECEIVED_ONCE = "turnlog_events_received_message"
TIPS = (
    "SELECT DISTINCT ON (stream_id) stream_id, version, hash FROM turnlog_events"
    " WHERE stream_id = ANY($1::text[]) ORDER BY stream_id, version DESC"
)
APPEND_ROWS = "SELECT conflicts, positions FROM turnlog_append_rows($1, $2, $3, $4, $5, $6)"
_encode_rows = msgspec.json.Encoder().encode


class Row(msgspec.Struct, frozen=True):
    """An event's small columns for turnlog_append_rows, under that function's keys.
    Positional, unlike the contracts: one is built per event appended."""

    q: int  # its request's place in the batch, from 1
    v: int
    t: str
    s: int
    r: datetime  # UTC, so the server reads the instant asyncpg would have sent
    c: str | None
    u: str | None
    a: str | None


def document(rows: list[Row]) -> str:
    """``rows`` as the JSON document turnlog_append_rows takes."""
    try:
        return _encode_rows(rows).decode()
    except (TypeError, ValueError) as e:  # what asyncpg would have refused as well
        raise msgspec.EncodeError(str(e)) from e


def columns(events: Sequence[NewEvent]) -> tuple[list[Any], ...]:
    """The columns of ``events`` as arrays, in the order turnlog_append takes them."""
    return (
        [e.type for e in events],
        [e.schema_version for e in events],
        [e.payload for e in events],
        [e.recorded_at for e in events],
        [e.correlation_id for e in events],
        [e.causation_id for e in events],
        [e.actor for e in events],
    )


def to_record(row: asyncpg.Record | Sequence[Any]) -> RecordedEvent:
    return RecordedEvent(
        position=row[0],
        stream_id=row[1],
        version=row[2],
        type=row[3],
        schema_version=row[4],
        payload=row[5],
        recorded_at=row[6],
        correlation_id=row[7],
        causation_id=row[8],
        actor=row[9],
        prev_hash=row[10],
        hash=row[11],
    )
