"""``turnlog infra status``, second half: the serving processes that report to the
database, each part of theirs and how it is doing, and the failed projections."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from turnlog.services.adapters.postgres.projector import failures
from turnlog.services.bootstrap.health import ProcessRow, live_processes


async def print_processes(database_url: str) -> int:
    """Print them; 0 when every part runs and no projection has failed, else 4."""
    try:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1, timeout=5)
    except (OSError, asyncpg.PostgresError) as e:
        print(f"processes (cannot ask the database: {e})")
        return 3
    try:
        if not await pool.fetchval("SELECT to_regclass('turnlog_processes') IS NOT NULL"):
            print("processes none (the schema is not there yet: `turnlog migrate`)")
            return 0
        rows = await live_processes(pool)
        failed = await failures.load(pool)
    finally:
        await pool.close()
    degraded = _print_rows(rows)
    for f in failed.values():
        print(f"projection {f.name} FAILED at position {f.position:,} ({f.event_type}): {f.error}")
    return 4 if degraded or failed else 0


def _print_rows(rows: list[ProcessRow]) -> bool:
    """Print the processes; whether a part of one is not running."""
    if not rows:
        print("processes none serving (none seen in the last 30 s)")
        return False
    degraded = False
    print("processes")
    now = datetime.now(UTC)
    for r in rows:
        up = int((now - r.started_at).total_seconds())
        print(f"  {r.host} pid {r.pid}: {r.what} (up {up // 60}m{up % 60:02d}s)")
        for p in r.parts:
            note = f", {p.restarts} restart(s), last: {p.last_error}" if p.restarts else ""
            print(f"    {p.name:<10} {p.state}{note}")
            degraded = degraded or p.state != "running"
    return degraded
