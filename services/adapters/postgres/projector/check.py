"""``turnlog audit check-projections``: rebuild every projection into scratch tables and
compare them, row for row, with the live ones at the same position."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from turnlog.projections.base import Projection
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.follow import GlobalReader
from turnlog.services.adapters.postgres.projector.rebuild import (
    Progress,
    build,
    make_scratch,
    scratch_schema,
)
from turnlog.services.adapters.postgres.projector.writes import Conn, hold, quote

PURPOSE = "check"
SAMPLES = 3


class TableCheck(msgspec.Struct, frozen=True, kw_only=True):
    """How one live table compares with the same table made again from the log."""

    projection: str
    table: str
    position: int
    only_live: int  # rows the live table has and the rebuilt one lacks
    only_rebuilt: int
    samples: list[str]  # a few of those rows, as text

    @property
    def ok(self) -> bool:
        return self.only_live == 0 and self.only_rebuilt == 0


async def check(
    store: EventStore, projections: Sequence[Projection], *, progress: Progress | None = None
) -> list[TableCheck]:
    pool = store.pool
    async with pool.acquire() as conn:
        live: str = await conn.fetchval("SELECT current_schema()")
        await make_scratch(conn, projections, PURPOSE)
    positions = await _positions(store, projections)
    start = min(positions.values(), default=0)
    reader = GlobalReader(store, 0, 5000)
    try:
        # the bulk, unlocked, up to where the slowest projection was
        await build(reader, pool, projections, progress, start, purpose=PURPOSE, until=start)
        async with pool.acquire() as conn, conn.transaction():
            for p in sorted(projections, key=lambda p: p.name):
                await hold(conn, p.name, exclusive=True)  # the live tables hold still
            positions = await _positions(store, projections, conn)
            out = []
            for p in projections:
                tail = GlobalReader(store, start, 5000)
                if positions[p.name] > tail.position:
                    await build(
                        tail, pool, [p], None, positions[p.name],
                        purpose=PURPOSE, until=positions[p.name],
                    )  # fmt: skip
                for table in p.tables:
                    out.append(await _compare(conn, p, table, live, positions[p.name]))
        return out
    finally:
        async with pool.acquire() as conn:
            for p in projections:
                await conn.execute(
                    f"DROP SCHEMA IF EXISTS {quote(scratch_schema(p, PURPOSE))} CASCADE"
                )


async def _positions(
    store: EventStore, projections: Sequence[Projection], conn: Conn | None = None
) -> dict[str, int]:
    rows = await (conn or store.pool).fetch(
        "SELECT name, position FROM turnlog_projection_positions WHERE name = ANY($1)",
        [p.name for p in projections],
    )
    found = {r[0]: r[1] for r in rows}
    return {p.name: found.get(p.name, 0) for p in projections}


async def _compare(
    conn: Conn, projection: Projection, table: str, live: str, position: int
) -> TableCheck:
    here = f"{quote(live)}.{table}"
    rebuilt = f"{quote(scratch_schema(projection, PURPOSE))}.{table}"
    counts = []
    samples: list[str] = []
    for a, b in ((here, rebuilt), (rebuilt, here)):
        diff = f"(TABLE {a} EXCEPT ALL TABLE {b}) d"
        counts.append(await conn.fetchval(f"SELECT count(*) FROM {diff}"))
        rows = await conn.fetch(f"SELECT d::text FROM {diff} LIMIT {SAMPLES}")
        side = "live" if a == here else "rebuilt"
        samples += [f"{side}: {r[0]}" for r in rows]
    return TableCheck(
        projection=projection.name,
        table=table,
        position=position,
        only_live=counts[0],
        only_rebuilt=counts[1],
        samples=samples,
    )
