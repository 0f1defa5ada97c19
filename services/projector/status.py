"""``turnlog projections status`` and ``rebuild``: what the command line shows."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from turnlog.projections.base import Projection
from turnlog.projections.catalog import PROJECTIONS
from turnlog.services.progress import progress_bar
from turnlog.services.projector.check import check
from turnlog.services.projector.rebuild import rebuild
from turnlog.services.projector.writes import ensure
from turnlog.services.store.errors import StoreError
from turnlog.services.store.eventstore import EventStore


class Status(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    position: int
    lag_events: int
    lag_seconds: float
    events_per_second: float


async def _positions(store: EventStore) -> dict[str, int]:
    rows = await store.pool.fetch("SELECT name, position FROM turnlog_projection_positions")
    return {r[0]: r[1] for r in rows}


async def _first_after(store: EventStore, position: int) -> Any:
    return await store.pool.fetchval(
        "SELECT recorded_at FROM turnlog_events WHERE position > $1 ORDER BY position LIMIT 1",
        position,
    )


async def status(store: EventStore, sample: float = 1.0) -> list[Status]:
    """Each projection's position and lag (events not applied yet, and how much older
    the oldest of them is than the newest event), and its rate over ``sample`` seconds."""
    before, started = await _positions(store), time.monotonic()
    await asyncio.sleep(sample)
    after, elapsed = await _positions(store), time.monotonic() - started
    last = await store.last_position()
    tip = await _first_after(store, last - 1) if last else None
    out = []
    for name in PROJECTIONS:
        position = after.get(name, 0)
        oldest = await _first_after(store, position) if position < last else None
        lag = (tip - oldest).total_seconds() if tip is not None and oldest is not None else 0.0
        out.append(
            Status(
                name=name,
                position=position,
                lag_events=last - position,
                lag_seconds=round(lag, 3),
                events_per_second=round((position - before.get(name, 0)) / elapsed, 1),
            )
        )
    return out


def print_status(rows: list[Status], *, as_json: bool) -> None:
    if as_json:
        print(msgspec.json.encode(rows).decode())
        return
    print(
        f"{'projection':<12} {'position':>10} {'lag (events)':>13} {'lag (s)':>9} {'events/s':>10}"
    )
    for r in rows:
        print(
            f"{r.name:<12} {r.position:>10,} {r.lag_events:>13,} {r.lag_seconds:>9.3f}"
            f" {r.events_per_second:>10,.1f}"
        )


def chosen(names: list[str], everything: bool) -> list[Projection]:
    if everything:
        return list(PROJECTIONS.values())
    unknown = [n for n in names if n not in PROJECTIONS]
    if unknown or not names:
        raise StoreError(
            f"unknown projection {', '.join(unknown)!s}; known: {', '.join(PROJECTIONS)}"
            if unknown
            else f"name a projection ({', '.join(PROJECTIONS)}) or --all"
        )
    return [PROJECTIONS[n] for n in names]


async def check_with_progress(store: EventStore, *, as_json: bool) -> int:
    """Print how each live table compares with a fresh build; 1 if any differs."""
    projections = list(PROJECTIONS.values())
    await ensure(store.pool, projections)
    with progress_bar("checking projections") as progress:
        results = await check(store, projections, progress=progress)
    if as_json:
        print(
            msgspec.json.encode(
                [msgspec.structs.asdict(r) | {"ok": r.ok} for r in results]
            ).decode()
        )
    else:
        for r in results:
            state = (
                "ok"
                if r.ok
                else f"DIFFERS: {r.only_live} rows only live, {r.only_rebuilt} only rebuilt"
            )
            print(f"{r.projection:<12} {r.table:<22} at {r.position:>10,}  {state}")
            for sample in r.samples:
                print(f"    {sample}")
    return 0 if all(r.ok for r in results) else 1


async def rebuild_with_progress(store: EventStore, projections: list[Projection]) -> None:
    names = ", ".join(p.name for p in projections)
    await ensure(store.pool, projections)
    started = time.monotonic()
    with progress_bar(f"rebuilding {names}") as progress:
        position = await rebuild(store, projections, progress=progress)
    elapsed = time.monotonic() - started
    rate = position / elapsed if elapsed > 0 else 0.0
    print(f"rebuilt {names} up to position {position:,} in {elapsed:.1f} s ({rate:,.0f} events/s)")
