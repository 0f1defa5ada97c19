"""``turnlog erase-user`` end to end: the erasure in the log, then the copies NATS holds
(relayed events, inbound messages, dead letters, uploaded files).

The log comes first and always: with NATS out of reach the user is erased all the same,
and the report says what is left on NATS, which running the command again purges (a
user already erased is purged again, never erased twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import msgspec
import structlog

from turnlog.services.adapters.nats import connection
from turnlog.services.adapters.nats.purge import purge
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.adapters.postgres.erasure import Erasure, ErasureReport, erase
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.app.erasure import Purged
from turnlog.services.bootstrap.commands import open_log
from turnlog.services.settings import NatsSecurity

log = structlog.get_logger("turnlog.erasure")
RELAY_WAIT = 10.0  # seconds, at most, for the relay to publish up to the erasure
RELAY_IDLE = 2.0  # seconds without the relay moving: it is not running


async def erase_everywhere(
    database_url: str,
    nats_url: str,
    subjects: Subjects,
    user_id: str,
    *,
    reason: str = "",
    security: NatsSecurity | None = None,
) -> ErasureReport:
    """Erase ``user_id`` in the log, then purge their data from NATS (connected with
    ``security``'s credentials and TLS); the report of both."""
    async with open_log(database_url) as store:
        erasure = await erase(store, user_id, reason=reason)
        purged = await _purge(store, nats_url, subjects, erasure, security or NatsSecurity())
    return msgspec.structs.replace(erasure.report, purged=purged)


async def _purge(
    store: EventStore, nats_url: str, subjects: Subjects, erasure: Erasure, security: NatsSecurity
) -> Purged:
    try:
        nc = await connection.connect(nats_url, security, wait=False)
    except Exception as e:
        where = connection.redact(nats_url)
        return Purged(error=f"cannot connect to NATS at {where}: {e or type(e).__name__}")
    try:
        if erasure.report.position is not None:
            await relayed(store, erasure.report.position)
        return await purge(nc.jetstream(), subjects, erasure.reach)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


async def relayed(store: EventStore, position: int) -> bool:
    """Wait (a little) until every running relay has published the log up to
    ``position``: a relay still behind would publish the user's earlier events after the
    purge. Whether they all have; a relay that does not move is taken as stopped (when it
    starts again it reads the keys as they are then: erased)."""
    deadline = time.monotonic() + RELAY_WAIT
    last: list[int] = []
    moved = time.monotonic()
    while time.monotonic() < deadline:
        rows = await store.pool.fetch("SELECT position FROM turnlog_relay_positions")
        positions = sorted(r[0] for r in rows)
        if all(p >= position for p in positions):
            return True
        if positions != last:
            last, moved = positions, time.monotonic()
        elif time.monotonic() - moved > RELAY_IDLE:
            break
        await asyncio.sleep(0.1)
    log.warning(
        "the relay has not published up to the erasure; run erase-user again once it has",
        position=position,
        relayed=last[0] if last else None,
    )
    return False
