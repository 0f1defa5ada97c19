"""Claims held as PostgreSQL advisory locks on a connection of their own: the locks go
with the connection, so a process that dies lets go of its claims (an app's messages, its
partitions, a schedule's run) at once.

One connection holds all of a process's claims (a runtime holds one per partition it
owns; a connection each would drain the pool). PostgreSQL lets the session holding a lock
take it again, so the claims keep the keys they hold and refuse a second claim on one
within the process as well.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

log = structlog.get_logger("turnlog.claims")

_HELD = (
    "SELECT objid::int8 FROM pg_locks"
    " WHERE locktype = 'advisory' AND objsubid = 2 AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND classid = ($1::int8 & 4294967295)::oid"
)


class PostgresClaim:
    """One advisory lock, held on the claims' connection until released."""

    def __init__(self, claims: PostgresClaims, conn: PoolConnectionProxy, key: tuple[int, int]):
        self._claims, self._conn, self.key = claims, conn, key

    async def alive(self) -> bool:
        """Whether the connection that took the lock is still the claims' and answers."""
        return await asyncio.shield(self._claims._alive(self))  # a query is never cut off

    async def release(self) -> None:
        await self._claims._release(self)


class PostgresClaims:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._conn: PoolConnectionProxy | None = None
        self._held: dict[tuple[int, int], PostgresClaim] = {}
        self._lock = asyncio.Lock()  # one query at a time on the connection

    async def try_claim(self, key: tuple[int, int]) -> PostgresClaim | None:
        """The claim, or None. A caller cancelled meanwhile (a stopping process) does not
        cut the query off, which would leave the lock's state unknown: it completes, and
        a lock it took is let go of again."""
        claiming = asyncio.ensure_future(self._try_claim(key))
        try:
            return await asyncio.shield(claiming)
        except asyncio.CancelledError:
            claiming.add_done_callback(_unwanted)
            raise

    async def _try_claim(self, key: tuple[int, int]) -> PostgresClaim | None:
        async with self._lock:
            if key in self._held:
                return None
            conn = await self._connection()
            try:
                got = await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *key)
            except Exception:
                await self._drop()  # the locks it held went with it
                raise
            if not got:
                await self._let_go_if_idle()
                return None
            claim = self._held[key] = PostgresClaim(self, conn, key)
            return claim

    async def held(self, space: int) -> set[int]:
        rows = await self.pool.fetch(_HELD, space)
        return {n - 2**32 if n >= 2**31 else n for (n,) in rows}

    async def _connection(self) -> PoolConnectionProxy:
        if self._conn is None or self._conn.is_closed():
            await self._drop()
            self._conn = await self.pool.acquire()
        return self._conn

    async def _alive(self, claim: PostgresClaim) -> bool:
        async with self._lock:
            if self._held.get(claim.key) is not claim or claim._conn is not self._conn:
                return False
            try:
                await claim._conn.fetchval("SELECT 1")
            except Exception:
                await self._drop()
                return False
            return True

    async def _release(self, claim: PostgresClaim) -> None:
        await asyncio.shield(self._unlock(claim))  # once asked, done: cancelled or not

    async def _unlock(self, claim: PostgresClaim) -> None:
        """Unlock, if the lock is still held by this claim's connection (one lost with its
        connection is gone; a lock the connection cannot unlock goes with the connection,
        which is closed); the connection goes back to the pool once no claim is held."""
        async with self._lock:
            if self._held.get(claim.key) is not claim:
                return
            del self._held[claim.key]
            if claim._conn is self._conn:
                try:
                    await claim._conn.execute("SELECT pg_advisory_unlock($1, $2)", *claim.key)
                except Exception as e:
                    log.info("a claim could not unlock; closing its connection", error=str(e))
                    await self._drop()
            await self._let_go_if_idle()

    async def _let_go_if_idle(self) -> None:
        if not self._held and self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await self.pool.release(conn)

    async def _drop(self) -> None:
        """Forget the connection and every claim on it: its locks are gone with it."""
        conn, self._conn = self._conn, None
        self._held = {k: c for k, c in self._held.items() if c._conn is not conn}
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()
            with contextlib.suppress(Exception):
                await self.pool.release(conn)


def _unwanted(claiming: asyncio.Future[PostgresClaim | None]) -> None:
    """Let go of a claim taken for a caller that was cancelled meanwhile."""
    if claiming.cancelled() or claiming.exception() is not None:
        return
    claim = claiming.result()
    if claim is not None:
        _letting_go.add(task := asyncio.ensure_future(claim.release()))
        task.add_done_callback(_letting_go.discard)


_letting_go: set[asyncio.Future[None]] = set()  # referenced until done
