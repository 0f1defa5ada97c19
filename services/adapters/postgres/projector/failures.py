"""Projections stopped at an event they cannot apply: recorded in PostgreSQL, reported
by ``turnlog projections status`` and ``/healthz``, and retried.

A projection that fails on an event (a value its tables refuse, a payload this version
cannot read, a bug in its fold) stops at the event before it; the other projections, the
relay and the runtime go on. Every projector start tries it again (an upgrade may have
fixed it), and so does ``turnlog projections retry NAME``. The row goes once the
projection has applied the event.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from turnlog.contracts import query as q
from turnlog.domain.values import clean
from turnlog.projections.base import Event

_RECORD = """
INSERT INTO turnlog_projection_failures
    (name, position, stream_id, version, event_type, error)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (name) DO UPDATE SET
    attempts = CASE WHEN turnlog_projection_failures.position = excluded.position
                    THEN turnlog_projection_failures.attempts + 1 ELSE 1 END,
    position = excluded.position, stream_id = excluded.stream_id,
    version = excluded.version, event_type = excluded.event_type,
    error = excluded.error, failed_at = now()
RETURNING name, position, stream_id, version, event_type, error, attempts, failed_at
"""
_COLUMNS = "name, position, stream_id, version, event_type, error, attempts, failed_at"


Failure = q.ProjectionFailure


def _failure(row: asyncpg.Record) -> Failure:
    fields = dict(row)
    return Failure(**fields | {"failed_at": fields["failed_at"].isoformat(timespec="seconds")})


def describe(error: BaseException) -> str:
    """``error`` as stored and shown: its type and message, bounded."""
    text = str(error).strip() or "(no message)"
    return clean(f"{type(error).__name__}: {text}")[:2000]


async def record(pool: asyncpg.Pool, name: str, event: Event, error: BaseException) -> Failure:
    row = await pool.fetchrow(
        _RECORD, name, event.position, event.stream_id, event.version, event.type, describe(error)
    )
    assert row is not None  # RETURNING always gives the row
    return _failure(row)


async def load(pool: asyncpg.Pool, names: Iterable[str] | None = None) -> dict[str, Failure]:
    """The recorded failures (of ``names`` only, if given)."""
    rows = await pool.fetch(f"SELECT {_COLUMNS} FROM turnlog_projection_failures ORDER BY name")
    wanted = None if names is None else set(names)
    return {r["name"]: _failure(r) for r in rows if wanted is None or r["name"] in wanted}


async def passed(pool: asyncpg.Pool, name: str, position: int) -> None:
    """Forget ``name``'s failure once it has applied the event it failed at."""
    await pool.execute(
        "DELETE FROM turnlog_projection_failures WHERE name = $1 AND position <= $2",
        name,
        position,
    )


async def retry(pool: asyncpg.Pool, names: Iterable[str]) -> list[Failure]:
    """Ask projectors to try ``names`` again: their failures are removed, which running
    projectors notice within seconds. The failures removed."""
    rows = await pool.fetch(
        "DELETE FROM turnlog_projection_failures WHERE name = ANY($1::text[])"
        f" RETURNING {_COLUMNS}",
        list(names),
    )
    return [_failure(r) for r in rows]
