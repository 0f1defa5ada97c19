"""Read models of sessions: the session list, history, ``session.data`` and blocks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from turnlog.contracts import events as ev
from turnlog.projections.base import Copy, Event, Exec, Write, jsonb


class Sessions:
    """One row per session: who, where, when, how many messages, last activity."""

    name: ClassVar[str] = "sessions"
    tables: ClassVar[tuple[str, ...]] = ("turnlog_sessions",)
    ddl: ClassVar[tuple[str, ...]] = (
        """CREATE TABLE {s}.turnlog_sessions (
            session_id    text        PRIMARY KEY,
            app           text        NOT NULL,
            user_id       text        NOT NULL,
            user_email    text,
            org_id        text,
            channel       text        NOT NULL,
            started_at    timestamptz NOT NULL,
            ended_at      timestamptz,
            end_reason    text,
            message_count integer     NOT NULL,
            reply_count   integer     NOT NULL,
            last_activity timestamptz NOT NULL,
            version       integer     NOT NULL
        )""",
        "CREATE INDEX turnlog_sessions_started ON {s}.turnlog_sessions"
        " (started_at DESC, session_id DESC)",
        "CREATE INDEX turnlog_sessions_user ON {s}.turnlog_sessions"
        " (user_id, started_at DESC, session_id DESC)",
        "CREATE INDEX turnlog_sessions_app ON {s}.turnlog_sessions"
        " (app, started_at DESC, session_id DESC)",
    )
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "session_id", "app", "user_id", "user_email", "org_id", "channel", "started_at",
        "ended_at", "end_reason", "message_count", "reply_count", "last_activity", "version",
    )  # fmt: skip

    def apply(self, events: Sequence[Event]) -> list[Write]:
        new: dict[str, list[Any]] = {}
        changed: dict[str, list[Any]] = {}  # messages+, replies+, last, version, ended, reason
        for e in events:
            p = e.payload
            if not e.type.startswith("session."):
                continue
            if isinstance(p, ev.SessionStarted):
                u = p.user
                new[e.stream_id] = [
                    e.stream_id, p.app, u.id, u.email, u.org_id, p.channel.type,
                    e.recorded_at, None, None, 0, 0, e.recorded_at, e.version,
                ]  # fmt: skip
                continue
            row = new.get(e.stream_id)
            if row is not None:
                self._fold(row, 9, e, p)
            else:
                delta = changed.setdefault(
                    e.stream_id, [0, 0, e.recorded_at, e.version, None, None]
                )
                self._fold(delta, 0, e, p)
        writes: list[Write] = []
        if new:
            writes.append(Copy("turnlog_sessions", self.COLUMNS, [tuple(r) for r in new.values()]))
        if changed:
            writes.append(
                Exec(
                    "UPDATE {s}.turnlog_sessions SET message_count = message_count + $2,"
                    " reply_count = reply_count + $3, last_activity = $4, version = $5,"
                    " ended_at = coalesce($6, ended_at), end_reason = coalesce($7, end_reason)"
                    " WHERE session_id = $1",
                    [(sid, *d) for sid, d in changed.items()],
                )
            )
        return writes

    def erase(self, events: Sequence[Event]) -> list[Write]:
        emails = [
            (e.stream_id, e.payload.user.email)
            for e in events
            if isinstance(e.payload, ev.SessionStarted)
        ]
        if not emails:
            return []
        return [
            Exec("UPDATE {s}.turnlog_sessions SET user_email = $2 WHERE session_id = $1", emails)
        ]

    @staticmethod
    def _fold(row: list[Any], at: int, e: Event, p: ev.EventPayload | None) -> None:
        """Count ``e`` into ``row`` from column ``at``: messages, replies, last activity,
        version (then, for the delta form, ended_at and end_reason)."""
        if isinstance(p, ev.MessageReceived):
            row[at] += 1
        elif isinstance(p, ev.ReplySent):
            row[at + 1] += 1
        row[at + 2] = e.recorded_at
        row[at + 3] = e.version
        if isinstance(p, ev.SessionEnded):
            if at == 0:
                row[4], row[5] = e.recorded_at, p.reason
            else:
                row[7], row[8] = e.recorded_at, p.reason


class History:
    """Every message in and out of each session, in order."""

    name: ClassVar[str] = "history"
    tables: ClassVar[tuple[str, ...]] = ("turnlog_history",)
    ddl: ClassVar[tuple[str, ...]] = (
        """CREATE TABLE {s}.turnlog_history (
            session_id text        NOT NULL,
            version    integer     NOT NULL,
            position   bigint      NOT NULL,
            direction  text        NOT NULL,
            kind       text        NOT NULL,
            text       text        NOT NULL,
            message_id text,
            streamed   boolean     NOT NULL,
            at         timestamptz NOT NULL,
            PRIMARY KEY (session_id, version)
        )""",
    )
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "session_id", "version", "position", "direction", "kind", "text", "message_id",
        "streamed", "at",
    )  # fmt: skip

    def apply(self, events: Sequence[Event]) -> list[Write]:
        rows: list[tuple[Any, ...]] = []
        for e in events:
            p = e.payload
            item: tuple[str, str, str, str | None, bool]
            if isinstance(p, ev.MessageReceived):
                item = ("in", "message", p.text, p.message_id, False)
            elif isinstance(p, ev.ReplySent):
                item = ("out", "reply", p.text, e.correlation_id, p.streamed)
            elif isinstance(p, ev.Notified):
                item = ("out", "notification", p.text, e.correlation_id, False)
            else:
                continue
            rows.append((e.stream_id, e.version, e.position, *item, e.recorded_at))
        return [Copy("turnlog_history", self.COLUMNS, rows)] if rows else []

    def erase(self, events: Sequence[Event]) -> list[Write]:
        texts = [
            (e.stream_id, e.version, e.payload.text)
            for e in events
            if isinstance(e.payload, ev.MessageReceived | ev.ReplySent | ev.Notified)
        ]
        if not texts:
            return []
        return [
            Exec(
                "UPDATE {s}.turnlog_history SET text = $3 WHERE session_id = $1 AND version = $2",
                texts,
            )
        ]


class Data:
    """The current ``session.data`` of each session, one row per key."""

    name: ClassVar[str] = "data"
    tables: ClassVar[tuple[str, ...]] = ("turnlog_session_data",)
    ddl: ClassVar[tuple[str, ...]] = (
        """CREATE TABLE {s}.turnlog_session_data (
            session_id text    NOT NULL,
            key        text    NOT NULL,
            value      jsonb   NOT NULL,
            version    integer NOT NULL,
            PRIMARY KEY (session_id, key)
        )""",
    )

    def apply(self, events: Sequence[Event]) -> list[Write]:
        last = self._last(events)
        sets = [(sid, key, jsonb(v[1]), v[0]) for (sid, key), v in last.items() if v is not None]
        deletes = [(sid, key) for (sid, key), v in last.items() if v is None]
        writes: list[Write] = []
        if deletes:
            writes.append(
                Exec(
                    "DELETE FROM {s}.turnlog_session_data WHERE session_id = $1 AND key = $2",
                    deletes,
                )
            )
        if sets:
            writes.append(
                Exec(
                    "INSERT INTO {s}.turnlog_session_data (session_id, key, value, version)"
                    " VALUES ($1, $2, $3::jsonb, $4) ON CONFLICT (session_id, key)"
                    " DO UPDATE SET value = excluded.value, version = excluded.version",
                    sets,
                )
            )
        return writes

    def erase(self, events: Sequence[Event]) -> list[Write]:
        values = [
            (sid, key, jsonb(v[1]), v[0]) for (sid, key), v in self._last(events).items() if v
        ]
        if not values:
            return []
        return [
            Exec(
                "UPDATE {s}.turnlog_session_data SET value = $3::jsonb"
                " WHERE session_id = $1 AND key = $2 AND version = $4",
                values,
            )
        ]

    @staticmethod
    def _last(events: Sequence[Event]) -> dict[tuple[str, str], tuple[int, Any] | None]:
        """The last (version, value) of each (session, key) in ``events``; None: deleted."""
        last: dict[tuple[str, str], tuple[int, Any] | None] = {}
        for e in events:
            p = e.payload
            if isinstance(p, ev.DataSet):
                last[(e.stream_id, p.key)] = (e.version, p.value)
            elif isinstance(p, ev.DataDeleted):
                last[(e.stream_id, p.key)] = None
        return last


class Blocks:
    """The latest payload of each block, in the order blocks were first shown."""

    name: ClassVar[str] = "blocks"
    tables: ClassVar[tuple[str, ...]] = ("turnlog_blocks",)
    ddl: ClassVar[tuple[str, ...]] = (
        """CREATE TABLE {s}.turnlog_blocks (
            session_id    text        NOT NULL,
            block_id      text        NOT NULL,
            block_type    text        NOT NULL,
            payload       jsonb       NOT NULL,
            first_version integer     NOT NULL,
            version       integer     NOT NULL,
            updated_at    timestamptz NOT NULL,
            PRIMARY KEY (session_id, block_id)
        )""",
    )

    def apply(self, events: Sequence[Event]) -> list[Write]:
        latest: dict[tuple[str, str], list[Any]] = {}
        for e in events:
            p = e.payload
            if isinstance(p, ev.BlockShown):
                key = (e.stream_id, p.block_id)
                first = latest[key][4] if key in latest else e.version
                latest[key] = [e.stream_id, p.block_id, p.block_type, jsonb(p.payload), first,
                               e.version, e.recorded_at]  # fmt: skip
        if not latest:
            return []
        return [
            Exec(
                "INSERT INTO {s}.turnlog_blocks (session_id, block_id, block_type, payload,"
                " first_version, version, updated_at) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)"
                " ON CONFLICT (session_id, block_id) DO UPDATE SET"
                " block_type = excluded.block_type, payload = excluded.payload,"
                " version = excluded.version,"
                " updated_at = excluded.updated_at",
                [tuple(r) for r in latest.values()],
            )
        ]
