"""The projection queries behind the HTTP API and NATS request/reply: one place where
what a key may see is decided."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from asyncpg.exceptions import _base as asyncpg_base

from turnlog.contracts import query as q
from turnlog.domain.errors import DomainError
from turnlog.projections.catalog import PROJECTIONS
from turnlog.projections.collections_sql import compile_filter
from turnlog.projections.state import fold
from turnlog.services.adapters.postgres.keys import PostgresKeys
from turnlog.services.adapters.postgres.projector import failures
from turnlog.services.adapters.postgres.projector.writes import decode
from turnlog.services.adapters.postgres.rows import COLUMNS, to_record
from turnlog.services.app.access import MAX_LIMIT, Principal, forbidden, invalid, not_found
from turnlog.services.app.sealing import KeyRing

_json = msgspec.json.Decoder()
_SESSION_COLUMNS = (
    "session_id, app, user_id, user_email, org_id, channel, started_at, ended_at, end_reason,"
    " message_count, reply_count, last_activity, version"
)


def _iso(at: datetime | None) -> str | None:
    return at.isoformat(timespec="microseconds") if at is not None else None


def _cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(values)).decode().rstrip("=")


def _uncursor(cursor: str | None, kinds: tuple[type, ...]) -> list[Any] | None:
    if not cursor:
        return None
    try:
        values = _json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, msgspec.DecodeError):
        raise invalid("cursor is not one this API gave out") from None
    if (
        not isinstance(values, list)
        or len(values) != len(kinds)
        or not all(isinstance(v, k) for v, k in zip(values, kinds, strict=True))
    ):
        raise invalid("cursor is not one this API gave out")
    return values


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def _time(text: str | None, name: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise invalid(f"{name} is not an ISO 8601 time: {text!r}") from None


class QueryService:
    """The projection queries on PostgreSQL (``ports.Queries``)."""

    def __init__(self, pool: asyncpg.Pool, keyring: KeyRing | None = None) -> None:
        """``keyring``: the process's (its cache of keys); one of its own without."""
        self.pool = pool
        self.keyring = keyring or KeyRing(PostgresKeys(pool))

    def refuses(self, error: BaseException) -> bool:
        """Whether ``error`` is PostgreSQL (or asyncpg, encoding an argument) refusing a
        value of the caller's: a NUL character, a number out of range."""
        return isinstance(error, asyncpg.exceptions.DataError | asyncpg_base.DataError)

    async def list_sessions(
        self,
        who: Principal,
        *,
        app: str | None = None,
        user: str | None = None,
        channel: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> q.SessionPage:
        """Sessions, newest first; ``since``/``until`` bound their start time."""
        if not who.everyone:
            if user is not None and user != who.user_id:
                raise forbidden("this key only sees its own user's sessions")
            user = who.user_id
        params: list[Any] = []
        where = []
        for column, value in (("app", app), ("user_id", user), ("channel", channel)):
            if value is not None:
                params.append(value)
                where.append(f"{column} = ${len(params)}")
        for op, value, name in ((">=", since, "since"), ("<", until, "until")):
            at = _time(value, name)
            if at is not None:
                params.append(at)
                where.append(f"started_at {op} ${len(params)}")
        after = _uncursor(cursor, (str, str))
        if after is not None:
            params += [_time(after[0], "cursor"), after[1]]
            where.append(f"(started_at, session_id) < (${len(params) - 1}, ${len(params)})")
        params.append(_limit(limit) + 1)
        rows = await self.pool.fetch(
            f"SELECT {_SESSION_COLUMNS} FROM turnlog_sessions"
            f" WHERE {' AND '.join(where) or 'TRUE'}"
            f" ORDER BY started_at DESC, session_id DESC LIMIT ${len(params)}",
            *params,
        )
        items = [_summary(r) for r in rows[:limit]]
        more = len(rows) > limit
        return q.SessionPage(
            items=items,
            next_cursor=_cursor([items[-1].started_at, items[-1].session_id]) if more else None,
        )

    async def get_session(self, who: Principal, session_id: str) -> q.SessionSummary:
        row = await self.pool.fetchrow(
            f"SELECT {_SESSION_COLUMNS} FROM turnlog_sessions WHERE session_id = $1", session_id
        )
        if row is None or (not who.everyone and row["user_id"] != who.user_id):
            raise not_found(f"no session {session_id}")
        return _summary(row)

    async def history(
        self, who: Principal, session_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> q.HistoryPage:
        """Messages in and out, oldest first."""
        await self.get_session(who, session_id)
        after = _uncursor(cursor, (int,))
        rows = await self.pool.fetch(
            "SELECT version, direction, kind, text, message_id, streamed, at"
            " FROM turnlog_history WHERE session_id = $1 AND version > $2"
            " ORDER BY version LIMIT $3",
            session_id,
            after[0] if after else 0,
            _limit(limit) + 1,
        )
        items = [
            q.HistoryItem(
                version=r[0], direction=r[1], kind=r[2], text=r[3], message_id=r[4],
                streamed=r[5], at=_iso(r[6]) or "",
            )
            for r in rows[:limit]
        ]  # fmt: skip
        more = len(rows) > limit
        return q.HistoryPage(
            items=items, next_cursor=_cursor([items[-1].version]) if more else None
        )

    async def data(self, who: Principal, session_id: str) -> q.SessionData:
        await self.get_session(who, session_id)
        rows = await self.pool.fetch(
            "SELECT key, value FROM turnlog_session_data WHERE session_id = $1 ORDER BY key",
            session_id,
        )
        return q.SessionData(session_id=session_id, data={r[0]: _json.decode(r[1]) for r in rows})

    async def blocks(self, who: Principal, session_id: str) -> q.BlockList:
        await self.get_session(who, session_id)
        rows = await self.pool.fetch(
            "SELECT block_id, block_type, payload, first_version, version, updated_at"
            " FROM turnlog_blocks WHERE session_id = $1 ORDER BY first_version",
            session_id,
        )
        return q.BlockList(
            items=[
                q.BlockItem(
                    block_id=r[0], block_type=r[1], payload=_json.decode(r[2]),
                    first_version=r[3], version=r[4], updated_at=_iso(r[5]) or "",
                )
                for r in rows
            ]
        )  # fmt: skip

    async def events(
        self,
        who: Principal,
        session_id: str,
        *,
        from_version: int = 1,
        limit: int = 100,
        cursor: str | None = None,
    ) -> q.EventPage:
        """The session's own events from ``from_version``, straight from the log."""
        await self.get_session(who, session_id)
        after = _uncursor(cursor, (int,))
        start = after[0] + 1 if after else max(from_version, 1)
        rows = await self.pool.fetch(
            f"SELECT {COLUMNS} FROM turnlog_events"
            " WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3",
            session_id,
            start,
            _limit(limit) + 1,
        )
        records = await self.keyring.unseal([to_record(r) for r in rows[:limit]])
        items = [
            q.EventItem(
                position=r.position, version=r.version, type=r.type,
                schema_version=r.schema_version, recorded_at=_iso(r.recorded_at) or "",
                correlation_id=r.correlation_id, causation_id=r.causation_id, actor=r.actor,
                payload=_json.decode(r.payload),
            )
            for r in records
        ]  # fmt: skip
        more = len(rows) > limit
        return q.EventPage(items=items, next_cursor=_cursor([items[-1].version]) if more else None)

    async def state(
        self,
        who: Principal,
        session_id: str,
        *,
        as_of_version: int | None = None,
        at: str | None = None,
    ) -> q.SessionState:
        """The session's history, data and blocks as of a version or a time (the latest
        without either), folded from its events alone."""
        await self.get_session(who, session_id)
        moment = _time(at, "at")
        if moment is not None and moment.tzinfo is None:
            raise invalid("at needs a time zone (e.g. 2026-11-21T10:00:00+00:00)")
        rows = await self.pool.fetch(
            f"SELECT {COLUMNS} FROM turnlog_events WHERE stream_id = $1"
            " AND ($2::integer IS NULL OR version <= $2)"
            " AND ($3::timestamptz IS NULL OR recorded_at <= $3) ORDER BY version",
            session_id,
            as_of_version,
            moment,
        )
        if not rows:
            raise not_found(f"session {session_id} has no events at that point")
        records = await self.keyring.unseal([to_record(r) for r in rows])
        return fold(session_id, decode(records))

    async def find(self, who: Principal, request: q.FindRequest) -> q.DocumentPage:
        """Documents of one collection in ``_id`` order; a user key sees its user's (and
        its user's sessions') documents only."""
        params: list[Any] = [request.app, request.collection]
        where = ["app = $1", "collection = $2", "NOT deleted"]
        if who.everyone:
            if request.owner is not None:
                params.append(request.owner)
                where.append(f"owner = ${len(params)}")
        else:
            if request.owner is not None and request.owner != who.user_id:
                raise forbidden("this key only sees its own user's documents")
            params.append(who.user_id)
            n = len(params)
            where.append(
                f"((scope IN ('user', 'owner') AND owner = ${n}) OR (scope = 'session' AND"
                f" owner IN (SELECT session_id FROM turnlog_sessions WHERE user_id = ${n})))"
            )
        try:
            where.append(f"({compile_filter(request.filter, params)})")
        except DomainError as e:
            raise invalid(str(e)) from None
        after = _uncursor(request.cursor, (str,))
        if after is not None:
            params.append(after[0])
            where.append(f"doc_id > ${len(params)}")
        params.append(_limit(request.limit) + 1)
        rows = await self.pool.fetch(
            f"SELECT doc_id, scope, owner, doc FROM turnlog_documents WHERE {' AND '.join(where)}"
            f" ORDER BY doc_id LIMIT ${len(params)}",
            *params,
        )
        items = [
            q.DocumentItem(scope=r[1], owner=r[2], document=_json.decode(r[3]))
            for r in rows[: request.limit]
        ]
        more = len(rows) > request.limit
        last = rows[request.limit - 1][0] if more else None
        return q.DocumentPage(items=items, next_cursor=_cursor([last]) if more else None)

    async def projection_status(self, who: Principal) -> q.ProjectionStatusList:
        if not who.everyone:
            raise forbidden("projection status needs a read or admin key")
        last = await self.pool.fetchval("SELECT coalesce(max(position), 0) FROM turnlog_events")
        rows = await self.pool.fetch(
            "SELECT name, position, updated_at FROM turnlog_projection_positions"
            " WHERE name = ANY($1) ORDER BY name",
            list(PROJECTIONS),
        )
        failed = await failures.load(self.pool)
        return q.ProjectionStatusList(
            items=[
                q.ProjectionStatus(
                    name=r[0], position=r[1], last_position=last, lag_events=last - r[1],
                    updated_at=_iso(r[2]) or "", state="failed" if r[0] in failed else "ok",
                    failure=failed.get(r[0]),
                )
                for r in rows
            ]
        )  # fmt: skip


def _summary(r: asyncpg.Record) -> q.SessionSummary:
    return q.SessionSummary(
        session_id=r[0], app=r[1], user_id=r[2], user_email=r[3], org_id=r[4], channel=r[5],
        started_at=_iso(r[6]) or "", ended_at=_iso(r[7]), end_reason=r[8], message_count=r[9],
        reply_count=r[10], last_activity=_iso(r[11]) or "", version=r[12],
    )  # fmt: skip
