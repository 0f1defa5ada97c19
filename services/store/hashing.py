"""The per-stream hash chain: each event's hash covers its predecessor's hash and a
canonical encoding of the event, so altering, removing or reordering a row shows."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import msgspec

GENESIS = bytes(32)

_encode = msgspec.json.Encoder().encode


def canonical(
    stream_id: str,
    version: int,
    type_name: str,
    schema_version: int,
    recorded_at: datetime,
    correlation_id: str | None,
    causation_id: str | None,
    actor: str | None,
    payload: bytes,
) -> bytes:
    """The bytes an event's hash is computed over: a JSON header line, then the payload."""
    header = _encode(
        [
            stream_id,
            version,
            type_name,
            schema_version,
            recorded_at.astimezone(UTC).isoformat(timespec="microseconds"),
            correlation_id,
            causation_id,
            actor,
        ]
    )
    return header + b"\n" + payload


def chain(prev_hash: bytes, canonical_bytes: bytes) -> bytes:
    return hashlib.sha256(prev_hash + canonical_bytes).digest()
