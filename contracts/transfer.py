"""The export file format: JSON Lines, one stored event a line, in log order.

Each line is an ``ExportedEvent`` with its fields in declaration order, so encoding is
deterministic: exporting a log, importing it into an empty store and exporting again gives
the same bytes. Times are ISO 8601 in UTC with microseconds (``+00:00``); the payload is
the stored JSON exactly as stored; hashes are lowercase hex. Unknown fields are refused:
a line this code does not fully understand is not imported.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

Hex32 = Annotated[str, msgspec.Meta(min_length=64, max_length=64)]
"""A 32-byte SHA-256 digest as 64 hex digits."""


class ExportedEvent(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One event of the log as exported: every stored column, so it imports unchanged."""

    position: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
    stream_id: str
    version: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
    type: str
    schema_version: Annotated[int, msgspec.Meta(ge=-(2**15), le=2**15 - 1)]
    recorded_at: str
    correlation_id: str | None
    causation_id: str | None
    actor: str | None
    payload: msgspec.Raw
    """The stored JSON payload, embedded as is (not re-encoded)."""
    prev_hash: Hex32
    hash: Hex32
