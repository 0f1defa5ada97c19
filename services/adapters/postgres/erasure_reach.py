"""Where one user's data is, found by scanning the log: their sessions, every stream with
events sealed with their key (documents their sessions wrote, their tasks, their
integrations), the apps those belong to, and the files those streams refer to.
``erase-user`` erases it in the log, then purges the copies NATS holds."""

from __future__ import annotations

import re

import msgspec

from turnlog.services.adapters.postgres.projector.writes import Conn
from turnlog.services.app.erasure import Reach
from turnlog.services.app.integrations import integrations_stream
from turnlog.services.app.log.records import app_of
from turnlog.services.app.sealed import MARKER, PERSONAL, needle

_encode = msgspec.json.Encoder().encode
_URL = re.compile(rb'nats-object://[^"\\\s]+')

_SESSIONS = (
    "SELECT stream_id FROM turnlog_events"
    " WHERE type = 'session.started' AND position($1::bytea IN payload) > 0"
)
_SEALED = (
    "SELECT stream_id, count(*), bool_or(type LIKE 'document.%') FROM turnlog_events"
    " WHERE position($1::bytea IN payload) > 0 GROUP BY stream_id"
)
_UNSEALED = (
    "SELECT count(*) FROM turnlog_events WHERE stream_id = ANY($1::text[])"
    " AND type = ANY($2::text[]) AND substring(payload FROM 1 FOR $3) <> $4::bytea"
)
_FIRSTS = (
    "SELECT stream_id, payload FROM turnlog_events"
    " WHERE stream_id = ANY($1::text[]) AND version = 1 ORDER BY stream_id"
)
_FILES = (
    "SELECT payload FROM turnlog_events WHERE stream_id = ANY($1::text[])"
    " AND position('nats-object://'::bytea IN payload) > 0"
)


def session_needle(user_id: str) -> bytes:
    """Bytes that a ``session.started`` payload of ``user_id`` contains."""
    return b'"user":{"id":' + _encode(user_id) + b","


async def survey(conn: Conn, user_id: str) -> Reach:
    """Where ``user_id``'s data is (one scan of the log for their sessions, one for their
    seal; erasures are rare)."""
    sessions = [r[0] for r in await conn.fetch(_SESSIONS, session_needle(user_id))]
    sealed = await conn.fetch(_SEALED, needle(user_id))
    marker = b'{"' + MARKER.encode() + b'"'
    unsealed = await conn.fetchval(_UNSEALED, sessions, list(PERSONAL), len(marker), marker)
    streams = await _apps(conn, {*sessions, *(r[0] for r in sealed), integrations_stream(user_id)})
    return Reach(
        user_id=user_id,
        sessions=tuple(sessions),
        streams=streams,
        apps=tuple(sorted(set(streams.values()) - {"_"})),
        files=await _files(conn, list(streams)),
        sealed_events=sum(r[1] for r in sealed),
        documents=sum(1 for r in sealed if r[2]),
        unsealed_events=unsealed,
    )


async def _apps(conn: Conn, streams: set[str]) -> dict[str, str]:
    """Each of ``streams`` with the app the relay publishes it under (named by its first
    event), in order; those not in the log are left out."""
    rows = await conn.fetch(_FIRSTS, sorted(streams))
    return {row[0]: app_of(row[1]) for row in rows}


async def _files(conn: Conn, streams: list[str]) -> tuple[str, ...]:
    """The file store references in ``streams`` (attachments and prompt answers carry
    them in clear)."""
    found: set[str] = set()
    for (payload,) in await conn.fetch(_FILES, streams):
        found.update(url.decode() for url in _URL.findall(payload))
    return tuple(sorted(found))
