"""The users' sealing keys in PostgreSQL (``turnlog_user_keys``): the KeyStore port."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from turnlog.services.app.ports import KeyId

_LATEST = (
    "SELECT generation, key FROM turnlog_user_keys WHERE user_id = $1"
    " ORDER BY generation DESC LIMIT 1"
)
_CREATE = (
    "INSERT INTO turnlog_user_keys (user_id, generation, key) VALUES ($1, $2, $3)"
    " ON CONFLICT DO NOTHING"
)
_KEYS = (
    "SELECT k.user_id, k.generation, k.key FROM turnlog_user_keys k"
    " JOIN unnest($1::text[], $2::integer[]) AS w(u, g) ON k.user_id = w.u AND k.generation = w.g"
)
_LIVE = (
    "SELECT key IS NOT NULL FROM turnlog_user_keys WHERE user_id = $1 AND generation = $2 FOR SHARE"
)
_DESTROY = (
    "UPDATE turnlog_user_keys SET key = NULL, erased_at = now()"
    " WHERE user_id = $1 AND key IS NOT NULL RETURNING generation"
)


class PostgresKeys:
    """Keys in the table the event log's database holds, so they move with it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def latest(self, user_id: str) -> tuple[int, bytes | None] | None:
        row = await self.pool.fetchrow(_LATEST, user_id)
        return None if row is None else (row[0], None if row[1] is None else bytes(row[1]))

    async def create(self, user_id: str, generation: int, key: bytes) -> None:
        await self.pool.execute(_CREATE, user_id, generation, key)

    async def find(self, wanted: Sequence[KeyId]) -> list[tuple[str, int, bytes | None]]:
        rows = await self.pool.fetch(_KEYS, [u for u, _ in wanted], [g for _, g in wanted])
        return [(r[0], r[1], None if r[2] is None else bytes(r[2])) for r in rows]

    async def live(self, holding: Any, user_id: str, generation: int) -> bool:
        return bool(await holding.fetchval(_LIVE, user_id, generation))

    async def destroy(self, holding: Any, user_id: str) -> list[int]:
        return sorted(r[0] for r in await holding.fetch(_DESTROY, user_id))
