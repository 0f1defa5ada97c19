"""``turnlog projections status`` and ``rebuild``: what the command line shows."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from turnlog.projections.base import Projection
from turnlog.projections.catalog import PROJECTIONS
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.projector import failures
from turnlog.services.adapters.postgres.projector.check import check
from turnlog.services.adapters.postgres.projector.rebuild import rebuild
from turnlog.services.adapters.postgres.projector.writes import ensure
from turnlog.services.app.log.errors import StoreError
from turnlog.services.cli.progress import progress_bar


class Status(msgspec.Struct, frozen=True, kw_only=True):
    """``state``: ``ok``, or ``failed`` at the event ``failure`` names (it stays there
    until retried)."""

    name: str
    position: int
    lag_events: int
    lag_seconds: float
    events_per_second: float
    state: str = "ok"
    failure: failures.Failure | None = None


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
    failed = await failures.load(store.pool)
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
                state="failed" if name in failed else "ok",
                failure=failed.get(name),
            )
        )
    return out


def print_status(rows: list[Status], *, as_json: bool) -> None:
    if as_json:
        print(msgspec.json.encode(rows).decode())
        return
    print(
        f"{'projection':<12} {'state':<7} {'position':>10} {'lag (events)':>13} {'lag (s)':>9}"
        f" {'events/s':>10}"
    )
    for r in rows:
        print(
            f"{r.name:<12} {r.state:<7} {r.position:>10,} {r.lag_events:>13,}"
            f" {r.lag_seconds:>9.3f} {r.events_per_second:>10,.1f}"
        )
    for r in rows:
        if r.failure is not None:
            f = r.failure
            print(
                f"\n{f.name} failed at position {f.position:,} ({f.event_type}, stream"
                f" {f.stream_id} version {f.version}; {f.attempts} attempt(s), last"
                f" {f.failed_at}):\n  {f.error}\n"
                f"  the other projections go on; fix and upgrade, or"
                f" `turnlog projections retry {f.name}`"
            )


async def retry_failed(store: EventStore, names: list[str], wait: float = 10.0) -> int:
    """Ask the projectors to try ``names`` again and report what became of it within
    ``wait`` seconds: 0 once each has passed its event (or none had failed), 1 if one
    failed again, 0 with a note when no projector took it up meanwhile."""
    removed = {f.name: f for f in await failures.retry(store.pool, names)}
    for name in names:
        if name not in removed:
            print(f"{name}: has not failed; nothing to retry")
    deadline = time.monotonic() + wait
    pending = dict(removed)
    code = 0
    while pending and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        again, positions = await failures.load(store.pool, pending), await _positions(store)
        for name, before in list(pending.items()):
            if name in again:
                print(
                    f"{name}: failed again at position {again[name].position:,}:"
                    f" {again[name].error}"
                )
                code = 1
                del pending[name]
            elif positions.get(name, 0) >= before.position:
                print(f"{name}: passed position {before.position:,}; it goes on")
                del pending[name]
    for name in pending:
        print(
            f"{name}: retry asked; no projector has taken it up yet (each one that runs"
            " or starts will)"
        )
    return code


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
