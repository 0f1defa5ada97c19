"""How a serving process is doing: ``/healthz`` from its supervisor and the projection
failures on record, and a beacon row in ``turnlog_processes`` (every few seconds) from
which ``turnlog infra status`` lists the live processes and their parts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import msgspec
import structlog

from turnlog.contracts import query as q
from turnlog.services.adapters.postgres.projector import failures
from turnlog.services.bootstrap.supervision import PartState, Supervisor

log = structlog.get_logger("turnlog.health")

BEACON_EVERY = 5.0
LIVE_WITHIN = 30.0  # a process not seen for this long is not listed
FORGET_AFTER = 3600.0  # rows of processes gone this long are removed
_encode = msgspec.json.Encoder().encode
_parts = msgspec.json.Decoder(list[q.PartHealth])
_runtimes = msgspec.json.Decoder(list[q.RuntimeHealth])
Runtimes = Callable[[], list[q.RuntimeHealth]]


def part_health(p: PartState) -> q.PartHealth:
    return q.PartHealth(
        name=p.name,
        state=p.state,
        restarts=p.restarts,
        last_error=p.last_error,
        since=p.since.isoformat(timespec="seconds"),
    )


async def health(pool: asyncpg.Pool, supervisor: Supervisor | None) -> q.Health:
    """This process's parts, whether the database answers, and the failed projections."""
    parts = [part_health(p) for p in supervisor.snapshot()] if supervisor else []
    try:
        async with asyncio.timeout(2.0):
            failed = list((await failures.load(pool)).values())
        database = "ok"
    except Exception:
        failed, database = [], "unreachable"
    ok = database == "ok" and not failed and all(p.state == "running" for p in parts)
    return q.Health(
        ok=ok,
        status="ok" if ok else "degraded",
        database=database,
        parts=parts,
        failed_projections=failed,
    )


class ProcessRow(msgspec.Struct, frozen=True, kw_only=True):
    """A live serving process, as ``turnlog infra status`` lists it."""

    id: str
    host: str
    pid: int
    what: str
    parts: list[q.PartHealth]
    started_at: datetime
    seen_at: datetime
    runtimes: list[q.RuntimeHealth] = []


class Beacon:
    """Keeps this process's row in ``turnlog_processes`` up to date (a supervised part)
    and removes it when the process stops."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        supervisor: Supervisor,
        what: str,
        runtimes: Runtimes | None = None,
    ) -> None:
        """``runtimes``: how this process's app runtimes are doing (none without)."""
        self.pool, self.supervisor, self.what = pool, supervisor, what
        self.runtimes = runtimes
        self._before: tuple[float, dict[str, int]] | None = None
        self.started_at = datetime.now(UTC)
        self.host, self.pid = socket.gethostname(), os.getpid()
        # unique even for two serve() in one process started in the same second (tests)
        started, nonce = int(self.started_at.timestamp()), secrets.token_hex(3)
        self.id = f"{self.host}:{self.pid}:{started}:{nonce}"

    async def run(self) -> None:
        try:
            while True:
                await self._write()
                await asyncio.sleep(BEACON_EVERY)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self.pool.execute("DELETE FROM turnlog_processes WHERE id = $1", self.id)

    def _rates(self) -> list[q.RuntimeHealth]:
        """The runtimes now, each with its turns per second since the last beacon."""
        now, current = time.monotonic(), self.runtimes() if self.runtimes else []
        before, self._before = self._before, (now, {r.app: r.turns for r in current})
        if before is None or now <= before[0]:
            return current
        elapsed, counted = now - before[0], before[1]
        return [
            msgspec.structs.replace(
                r, turns_per_second=round((r.turns - counted.get(r.app, r.turns)) / elapsed, 1)
            )
            for r in current
        ]

    async def _write(self) -> None:
        parts = _encode([part_health(p) for p in self.supervisor.snapshot()]).decode()
        runtimes = _encode(self._rates()).decode()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO turnlog_processes"
                " (id, host, pid, what, parts, runtimes, started_at, seen_at)"
                " VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, now())"
                " ON CONFLICT (id) DO UPDATE SET parts = excluded.parts,"
                " runtimes = excluded.runtimes, seen_at = now()",
                self.id,
                self.host,
                self.pid,
                self.what,
                parts,
                runtimes,
                self.started_at,
            )
            await conn.execute(
                "DELETE FROM turnlog_processes WHERE seen_at < now() - make_interval(secs => $1)",
                FORGET_AFTER,
            )


async def live_processes(pool: asyncpg.Pool) -> list[ProcessRow]:
    rows = await pool.fetch(
        "SELECT id, host, pid, what, parts::text, started_at, seen_at, runtimes::text"
        " FROM turnlog_processes"
        " WHERE seen_at > now() - make_interval(secs => $1) ORDER BY started_at",
        LIVE_WITHIN,
    )
    return [
        ProcessRow(
            id=r[0], host=r[1], pid=r[2], what=r[3], parts=_parts.decode(r[4]),
            started_at=r[5], seen_at=r[6], runtimes=_runtimes.decode(r[7]),
        )
        for r in rows
    ]  # fmt: skip
