"""The audit timeline: every event with its actor and correlation, in log order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from turnlog.projections.base import Copy, Event, Write


class Timeline:
    name: ClassVar[str] = "timeline"
    tables: ClassVar[tuple[str, ...]] = ("turnlog_timeline",)
    ddl: ClassVar[tuple[str, ...]] = (
        """CREATE TABLE {s}.turnlog_timeline (
            position       bigint      PRIMARY KEY,
            stream_id      text        NOT NULL,
            version        integer     NOT NULL,
            type           text        NOT NULL,
            recorded_at    timestamptz NOT NULL,
            actor          text,
            correlation_id text,
            causation_id   text
        )""",
        "CREATE INDEX turnlog_timeline_stream ON {s}.turnlog_timeline (stream_id, version)",
        "CREATE INDEX turnlog_timeline_correlation ON {s}.turnlog_timeline (correlation_id)",
    )
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "position", "stream_id", "version", "type", "recorded_at", "actor", "correlation_id",
        "causation_id",
    )  # fmt: skip

    def apply(self, events: Sequence[Event]) -> list[Write]:
        rows = [
            (e.position, e.stream_id, e.version, e.type, e.recorded_at, e.actor,
             e.correlation_id, e.causation_id)
            for e in events
        ]  # fmt: skip
        return [Copy("turnlog_timeline", self.COLUMNS, rows)] if rows else []
