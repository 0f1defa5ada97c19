"""Where one user's data is, found by scanning the log: their sessions, every stream with
events sealed with their key (documents their sessions wrote, their tasks, their
integrations), the apps those belong to, and the files those streams refer to.
``erase-user`` erases it in the log, then purges the copies NATS holds."""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec

from turnlog.services.integrations import integrations_stream
from turnlog.services.projector.writes import Conn
from turnlog.services.sealed import MARKER, PERSONAL, needle

_encode = msgspec.json.Encoder().encode
_first = msgspec.json.Decoder(dict[str, object])
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
_FIRSTS = "SELECT payload FROM turnlog_events WHERE stream_id = ANY($1::text[]) AND version = 1"
_FILES = (
    "SELECT payload FROM turnlog_events WHERE stream_id = ANY($1::text[])"
    " AND position('nats-object://'::bytea IN payload) > 0"
)


@dataclass(frozen=True)
class Reach:
    """A user's data in the log. ``streams``: every stream that held it (their sessions
    included); ``apps``: the apps those belong to; ``files``: the file store references
    (``nats-object://...``) in them; ``sealed_events``: events sealed with their key;
    ``documents``: document streams among them; ``unsealed_events``: personal events of
    their sessions written before sealing existed."""

    user_id: str
    sessions: tuple[str, ...]
    streams: tuple[str, ...]
    apps: tuple[str, ...]
    files: tuple[str, ...]
    sealed_events: int
    documents: int
    unsealed_events: int


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
    streams = sorted({*sessions, *(r[0] for r in sealed), integrations_stream(user_id)})
    return Reach(
        user_id=user_id,
        sessions=tuple(sessions),
        streams=tuple(streams),
        apps=await _apps(conn, streams),
        files=await _files(conn, streams),
        sealed_events=sum(r[1] for r in sealed),
        documents=sum(1 for r in sealed if r[2]),
        unsealed_events=unsealed,
    )


async def _apps(conn: Conn, streams: list[str]) -> tuple[str, ...]:
    """The apps of ``streams``, named by their first events (``app``, in clear)."""
    apps: set[str] = set()
    for (payload,) in await conn.fetch(_FIRSTS, streams):
        app = _first.decode(payload).get("app")
        if isinstance(app, str) and app:
            apps.add(app)
    return tuple(sorted(apps))


async def _files(conn: Conn, streams: list[str]) -> tuple[str, ...]:
    """The file store references in ``streams`` (attachments and prompt answers carry
    them in clear)."""
    found: set[str] = set()
    for (payload,) in await conn.fetch(_FILES, streams):
        found.update(url.decode() for url in _URL.findall(payload))
    return tuple(sorted(found))
