"""``turnlog erase-user``: erasing one user's personal data by destroying their keys.

In one transaction the user's keys are destroyed, a ``user.erased`` event is appended
(on a stream of that user's own), the snapshots of their sessions are deleted and the
collection view that handlers read their own writes from is brought in line. The log
itself does not change, so every hash chain still holds; projections bring the rows made
from that user's sealed fields in line when they reach the event, and a rebuild, with the
keys gone, makes the same rows.
"""

from __future__ import annotations

import getpass
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from turnlog.contracts.events import UserErased
from turnlog.projections.collections import Collections
from turnlog.services.adapters.postgres.erasure_reach import survey
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.projector.writes import Conn, decode, execute, hold, quote
from turnlog.services.adapters.postgres.rows import COLUMNS, to_record
from turnlog.services.app.erasure import Purged, Reach
from turnlog.services.app.log.errors import StoreError
from turnlog.services.app.log.records import NewEvent
from turnlog.services.app.sealed import needle
from turnlog.services.app.sealing import KeyRing

_STREAMS = uuid.UUID("6f2a3c1e-7a54-4f0e-9d2b-5c8e1b7a9f30")
_encode = msgspec.json.Encoder().encode
_view = Collections()

_KEYS = (
    "SELECT generation, key IS NULL, erased_at FROM turnlog_user_keys WHERE user_id = $1"
    " ORDER BY generation FOR UPDATE"
)
_FIRST_ERASED = (
    "INSERT INTO turnlog_user_keys (user_id, generation, erased_at) VALUES ($1, 1, now())"
)
_LAST_VERSION = "SELECT coalesce(max(version), 0) FROM turnlog_events WHERE stream_id = $1"
_DOCUMENTS = (
    f"SELECT {COLUMNS} FROM turnlog_events WHERE stream_id IN ("
    " SELECT DISTINCT stream_id FROM turnlog_events"
    " WHERE type LIKE 'document.%' AND position($1::bytea IN payload) > 0)"
    " ORDER BY position"
)
_SNAPSHOTS = (
    "DELETE FROM turnlog_snapshots WHERE stream_id = ANY($1::text[])"
    " OR position($2::bytea IN state) > 0"
)
_STATES = (
    "DELETE FROM turnlog_state_snapshots WHERE stream_id = ANY($1::text[])"
    " OR position($2::bytea IN state) > 0"
)


class UnknownUser(StoreError):
    """Raised when erase-user names a user turnlog has neither a key nor a session for."""

    code = "unknown_user"

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        super().__init__(f"no user {user_id!r}: no key and no session of theirs in the log")


class ErasureReport(msgspec.Struct, frozen=True, kw_only=True):
    """What ``erase_user`` did. ``events_sealed``: events whose personal fields were sealed
    for the user and now read as erased; ``events_unsealed``: events of their sessions
    written before sealing existed, which an erasure cannot reach; ``purged``: what
    ``erase-user`` then deleted from NATS."""

    user_id: str
    already_erased: bool
    erased_at: str
    position: int | None  # of the user.erased event (None if already erased)
    key_generations: list[int]
    sessions: int
    documents: int
    events_sealed: int
    events_unsealed: int
    purged: Purged | None = None  # from NATS, by erase-user (None: not tried)


def erasure_stream(user_id: str) -> str:
    """The stream of a user's erasure events (a name safe in a NATS subject)."""
    return f"user:{uuid.uuid5(_STREAMS, user_id)}"


@dataclass(frozen=True)
class Erasure:
    """An erasure in the log: the report, and where the user's data was (for purging
    its copies outside the log)."""

    report: ErasureReport
    reach: Reach


async def erase_user(
    store: EventStore, user_id: str, *, reason: str = "", actor: str | None = None
) -> ErasureReport:
    """Erase ``user_id``'s personal data in the log (see the module's docstring)."""
    return (await erase(store, user_id, reason=reason, actor=actor)).report


async def erase(
    store: EventStore, user_id: str, *, reason: str = "", actor: str | None = None
) -> Erasure:
    """``erase_user``, with where the data was: erasing a user already erased changes
    nothing in the log, and finds it all the same."""
    keyring = store.keyring
    async with store.pool.acquire() as conn, conn.transaction():
        await hold(conn, _view.name)  # before the keys, as document writers take them
        keys = await conn.fetch(_KEYS, user_id)  # locks them: erasures of a user queue up
        reach = await survey(conn, user_id)
        if not keys and not reach.sessions:
            raise UnknownUser(user_id)
        if keys and all(erased for _, erased, _ in keys):
            report = _report(reach, already_erased=True, erased_at=_iso(keys[-1][2]),
                             position=None, key_generations=[k[0] for k in keys])  # fmt: skip
            return Erasure(report, reach)
        generations = await keyring.erase(conn, user_id)
        if not keys:  # only unsealed data: remember the erasure all the same
            await conn.execute(_FIRST_ERASED, user_id)
        event = _erased(user_id, reason, generations, actor, reach.apps)
        stream = erasure_stream(user_id)
        version = await conn.fetchval(_LAST_VERSION, stream)
        [recorded] = await store.append(stream, version, [event], connection=conn)  # type: ignore[arg-type]
        await conn.execute(_SNAPSHOTS, list(reach.sessions), needle(user_id))
        await conn.execute(_STATES, list(reach.sessions), needle(user_id))
        await _erase_documents(conn, keyring, user_id)
    store.announce()
    report = _report(reach, already_erased=False, erased_at=_iso(event.recorded_at),
                     position=recorded.position, key_generations=generations)  # fmt: skip
    return Erasure(report, reach)


def _report(reach: Reach, **fields: Any) -> ErasureReport:
    return ErasureReport(
        user_id=reach.user_id, sessions=len(reach.sessions), documents=reach.documents,
        events_sealed=reach.sealed_events, events_unsealed=reach.unsealed_events, **fields,
    )  # fmt: skip


async def _erase_documents(conn: Conn, keyring: KeyRing, user_id: str) -> None:
    """The collection view, which handlers read their own writes from (and update from),
    shows the erasure at once rather than when the projector gets there."""
    schema: str = await conn.fetchval("SELECT current_schema()")
    view = f"{quote(schema)}.{_view.tables[0]}"
    if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", view):
        return
    rows = await conn.fetch(_DOCUMENTS, needle(user_id))
    events = decode(await keyring.unseal([to_record(r) for r in rows]))  # theirs: erased
    await execute(conn, _view.erase(events), schema)


def _erased(
    user_id: str, reason: str, generations: list[int], actor: str | None, apps: tuple[str, ...]
) -> NewEvent:
    payload = UserErased(
        user_id=user_id, reason=reason, key_generations=tuple(generations), apps=apps
    )
    return NewEvent(
        type=UserErased.TYPE,
        schema_version=UserErased.SCHEMA_VERSION,
        payload=_encode(payload),
        recorded_at=datetime.now(UTC),
        actor=actor or f"operator:{getpass.getuser()}",
    )


def _iso(at: datetime | None) -> str:
    return at.isoformat(timespec="microseconds") if at is not None else ""


def render(report: ErasureReport, *, as_json: bool = False) -> str:
    if as_json:
        return _encode(report).decode()
    if report.already_erased:
        done = "; nothing to do" if report.purged is None else ""
        lines = [f"user {report.user_id} was already erased (at {report.erased_at}){done}"]
    else:
        lines = [
            f"erased user {report.user_id}: key generation(s)"
            f" {', '.join(map(str, report.key_generations)) or '(none)'} destroyed,"
            f" user.erased recorded at position {report.position}",
            f"  {report.sessions} session(s), {report.documents} document(s) held their data;"
            f" {report.events_sealed} sealed event(s) now read as erased",
        ]
    if report.events_unsealed:
        lines.append(
            f"  {report.events_unsealed} event(s) of their sessions were written before"
            " sealing and stay readable"
        )
    return "\n".join(lines + _purged(report.purged))


def _purged(purged: Purged | None) -> list[str]:
    if purged is None:
        return []
    counts = (
        f"{purged.events} relayed event(s), {purged.inbound} inbound message(s),"
        f" {purged.dead_letters} dead letter(s), {purged.files} file(s)"
    )
    if purged.error is None:
        return [f"  deleted from NATS: {counts}"]
    return [
        f"  NOT purged from NATS: {purged.error}",
        f"  deleted from NATS so far: {counts};"
        " run erase-user again once NATS is reachable to finish",
    ]
