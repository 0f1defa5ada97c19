"""Small builders shared by the tests."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from turnlog.services.store.records import NewEvent


def said(text: str, type_name: str = "test.said", schema_version: int = 1) -> NewEvent:
    """A stored test event whose payload is ``{"text": text}``."""
    return NewEvent(
        type=type_name,
        schema_version=schema_version,
        payload=msgspec.json.encode({"text": text}),
        recorded_at=datetime.now(UTC),
        correlation_id="corr-1",
        actor="user:u1",
    )
