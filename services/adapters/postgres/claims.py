"""Claims held as PostgreSQL advisory locks, each on a connection of its own: the lock
goes with the connection, so a process that dies lets go of its claims (an app's
messages, a schedule's run) at once."""

from __future__ import annotations

import contextlib

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

log = structlog.get_logger("turnlog.claims")


class PostgresClaim:
    """One advisory lock, held on a pool connection until released."""

    def __init__(self, pool: asyncpg.Pool, conn: PoolConnectionProxy, key: tuple[int, int]):
        self._pool, self._conn, self._key = pool, conn, key

    async def alive(self) -> bool:
        try:
            await self._conn.fetchval("SELECT 1")
        except Exception:
            return False
        return True

    async def release(self) -> None:
        """Unlock and give the connection back; a connection that cannot unlock is closed,
        so the lock never goes back to the pool with it (one the pool took back already,
        having lost it, is left be)."""
        try:
            await self._conn.execute("SELECT pg_advisory_unlock($1, $2)", *self._key)
        except Exception as e:
            log.info("a claim could not unlock; closing its connection", error=str(e))
            with contextlib.suppress(Exception):
                self._conn.terminate()
        with contextlib.suppress(Exception):
            await self._pool.release(self._conn)


class PostgresClaims:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def try_claim(self, key: tuple[int, int]) -> PostgresClaim | None:
        conn = await self.pool.acquire()
        try:
            got = await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *key)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.pool.release(conn)
            raise
        if not got:
            await self.pool.release(conn)
            return None
        return PostgresClaim(self.pool, conn, key)
