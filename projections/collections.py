"""Collections: the current version of every document, from ``document.*`` events.

Writes are idempotent (a row only moves to a higher version), because a document write
applies them twice: in the writer's own transaction, so a handler reads its own writes,
and again when the projection runner reaches the event, which keeps the table
rebuildable from the log. A deleted document stays as a tombstone (``deleted``, empty
``doc``) so that a late re-application of its older events changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

from turnlog.contracts import events as ev
from turnlog.projections.base import Event, Exec, Write, jsonb

TABLE = "turnlog_documents"


class Collections:
    name: ClassVar[str] = "collections"
    tables: ClassVar[tuple[str, ...]] = (TABLE,)
    ddl: ClassVar[tuple[str, ...]] = (
        """CREATE TABLE {s}.turnlog_documents (
            stream_id  text        PRIMARY KEY,
            app        text        NOT NULL,
            collection text        NOT NULL,
            scope      text        NOT NULL,
            owner      text        NOT NULL,
            doc_id     text        NOT NULL,
            doc        jsonb       NOT NULL,
            version    integer     NOT NULL,
            deleted    boolean     NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        )""",
        "CREATE UNIQUE INDEX turnlog_documents_id ON {s}.turnlog_documents"
        " (app, collection, owner, doc_id) WHERE NOT deleted",
    )

    def apply(self, events: Sequence[Event]) -> list[Write]:
        inserted: dict[str, list[Any]] = {}
        changed: dict[str, list[Any]] = {}  # doc, version, deleted, updated_at
        for e in events:
            p = e.payload
            if isinstance(p, ev.DocumentInserted):
                inserted[e.stream_id] = [
                    e.stream_id, p.app, p.collection, p.scope, p.owner, p.doc_id,
                    p.document, e.version, False, e.recorded_at, e.recorded_at,
                ]  # fmt: skip
            elif isinstance(p, ev.DocumentUpdated | ev.DocumentDeleted):
                state = _state(p, e.version, e.recorded_at)
                row = inserted.get(e.stream_id)
                if row is not None:
                    row[6:9], row[10] = state[:3], state[3]
                else:
                    changed[e.stream_id] = state
        writes: list[Write] = []
        if inserted:
            writes.append(
                Exec(
                    "INSERT INTO {s}.turnlog_documents (stream_id, app, collection, scope,"
                    " owner, doc_id, doc, version, deleted, created_at, updated_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, $11)"
                    " ON CONFLICT (stream_id) DO UPDATE SET doc = excluded.doc,"
                    " version = excluded.version, deleted = excluded.deleted,"
                    " updated_at = excluded.updated_at"
                    " WHERE turnlog_documents.version < excluded.version",
                    [(*r[:6], jsonb(r[6]), *r[7:]) for r in inserted.values()],
                )
            )
        if changed:
            writes.append(
                Exec(
                    "UPDATE {s}.turnlog_documents SET doc = $2::jsonb, version = $3,"
                    " deleted = $4, updated_at = $5 WHERE stream_id = $1 AND version < $3",
                    [(sid, jsonb(s[0]), *s[1:]) for sid, s in changed.items()],
                )
            )
        return writes

    def erase(self, events: Sequence[Event]) -> list[Write]:
        """Documents as their events now read, where the row is still at that version (a
        writer may have moved it on; the projection then applies the later events)."""
        last: dict[str, tuple[Any, int] | None] = {}
        for e in events:
            p = e.payload
            if isinstance(p, ev.DocumentInserted | ev.DocumentUpdated):
                last[e.stream_id] = (p.document, e.version)
            elif isinstance(p, ev.DocumentDeleted):
                last[e.stream_id] = None
        rows = [(sid, jsonb(v[0]), v[1]) for sid, v in last.items() if v is not None]
        if not rows:
            return []
        return [
            Exec(
                "UPDATE {s}.turnlog_documents SET doc = $2::jsonb"
                " WHERE stream_id = $1 AND version = $3 AND NOT deleted",
                rows,
            )
        ]


def _state(p: ev.EventPayload, version: int, at: datetime) -> list[Any]:
    if isinstance(p, ev.DocumentUpdated):
        return [p.document, version, False, at]
    return [{}, version, True, at]
