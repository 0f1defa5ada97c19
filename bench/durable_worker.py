"""The child processes of bench/durable.py: one side (turnlog or DBOS) in a process of its
own, for one row of turns, a turn that is cut off, or the recovery of one.

    python -m bench.durable_turnlog rate --db URL --sessions 10 --seconds 5
    python -m bench.durable_turnlog cut --db URL --session ID --message ID
    python -m bench.durable_turnlog recover --db URL --session ID --message ID

``rate`` and ``recover`` print their figures as one JSON object on the last line of
stdout; ``cut`` runs a turn that stops after its reply and never returns (the parent
kills it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from turnlog.services.bootstrap import aio

WARM_UP = (4, 0.5)  # sessions, at most seconds: before a row is measured
MAX_POOL = 40  # connections per pool, as bench/compare.py: the server allows 100


def pool_size(sessions: int) -> int:
    return min(sessions + 2, MAX_POOL)


@dataclass(frozen=True)
class Side:
    """What a side runs in its child process: ``rate(db, sessions, seconds)`` one row of
    turns (after a warm-up); ``cut`` and ``recover`` take the database, the session and
    the message id of the turn that is cut off."""

    rate: Callable[[str, int, float], Awaitable[dict[str, Any]]]
    cut: Callable[[str, str, str], Awaitable[None]]
    recover: Callable[[str, str, str], Awaitable[dict[str, Any]]]


async def converse(
    turn: Callable[[str, int], Awaitable[object]], sessions: int, seconds: float
) -> dict[str, Any]:
    """``sessions`` sessions, each running turns back to back for ``seconds``: how many
    turns, over how long, and their latency."""
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []

    async def session() -> None:
        sid, n = uuid.uuid4().hex, 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await turn(sid, n)
            latencies.append((time.perf_counter() - started) * 1000)
            n += 1

    started = time.perf_counter()
    await asyncio.gather(*(session() for _ in range(sessions)))
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {"turns": len(latencies), "seconds": elapsed, "p50_ms": q[49], "p99_ms": q[98]}


async def measured(
    turn: Callable[[str, int], Awaitable[object]], sessions: int, seconds: float
) -> dict[str, Any]:
    """A warm-up, then ``converse``; how many turns the warm-up ran is counted too (the
    parent divides the database's transactions by all the turns of the process)."""
    warm_sessions, warm_seconds = WARM_UP
    warm = await converse(turn, warm_sessions, min(warm_seconds, seconds))
    found = await converse(turn, sessions, seconds)
    return {**found, "warmup_turns": warm["turns"]}


async def wait_for(ready: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Poll ``ready`` every 2 ms until it is true; TimeoutError after ``timeout`` s."""
    deadline = time.perf_counter() + timeout
    while not await ready():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{what} not within {timeout:g} s")
        await asyncio.sleep(0.002)


def serve(side: Side, prog: str) -> None:
    parser = argparse.ArgumentParser(prog=prog, description=(__doc__ or "").split("\n")[0])
    parser.add_argument("command", choices=("rate", "cut", "recover"))
    parser.add_argument("--db", required=True, help="the side's database URL")
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--session", default="", help="cut, recover: the session id")
    parser.add_argument("--message", default="", help="cut, recover: the message id")
    args = parser.parse_args()
    if args.command == "rate":
        result = aio.run(side.rate(args.db, args.sessions, args.seconds))
    elif args.command == "cut":
        aio.run(side.cut(args.db, args.session, args.message))
        raise SystemExit("the cut-off turn returned")
    else:
        result = aio.run(side.recover(args.db, args.session, args.message))
    print(json.dumps(result), flush=True)
