"""Round trips through NATS, with ``turnlog run`` serving the app in another process.

    python -m bench.bus [--seconds 5] [--sessions 1,10,100] [--runtimes 1]

Each producer sends a message and waits for its turn to complete. Two figures per round:
the reply round trip, from the publish on ``turnlog.in`` to the reply arriving on the
live subject (sent only once the reply is on record); and the completion, to the turn's
``session.turn_completed`` arriving on ``turnlog.events`` through the relay.
``--runtimes N`` serves the app in N processes (``turnlog run`` and N - 1 ``turnlog serve
runtime``), which share its sessions by partition (on NATS 2.10 and later).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bench.common import (
    latency_row,
    machine,
    scratch_database,
    server_url,
    table,
)
from turnlog.contracts import bus
from turnlog.services.adapters.embedded.endpoints import endpoints
from turnlog.services.adapters.embedded.processes import free_port
from turnlog.services.adapters.nats.client import Client
from turnlog.services.bootstrap import aio
from turnlog.services.settings import Settings

APP = Path(__file__).with_name("echo_app.py")
SHARING = 12.0  # seconds for several runtimes to start and share the partitions


async def converse(
    client: Client, seconds: float, interval: float = 0.0
) -> tuple[int, list[float], list[float]]:
    """Turns back to back, or (``interval`` > 0) one turn every ``interval`` seconds."""
    session = client.session("echo", user={"id": "bench"})
    await session.send_message("warm up")
    replies: list[float] = []
    completions: list[float] = []
    deadline = time.perf_counter() + seconds
    due = time.perf_counter() + random.uniform(0, interval)  # sessions out of step
    while time.perf_counter() < deadline:
        if interval:
            due += interval
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        started = time.perf_counter()

        def on_event(item: object, started: float = started) -> None:
            if isinstance(item, bus.LiveReply):
                replies.append((time.perf_counter() - started) * 1000)

        await session.send_message(f"m{len(completions)}", on_event=on_event)
        completions.append((time.perf_counter() - started) * 1000)
    return len(completions), replies, completions


async def measure(
    nats_url: str, prefix: str, sessions: int, seconds: float, rate: float = 0.0
) -> tuple[int, float, list[float], list[float]]:
    """Turns, elapsed seconds, reply round trips and completions (ms) of one round;
    ``rate`` > 0: each session sends ``rate`` messages a second instead of back to back."""
    client = await Client.connect(nats_url, prefix=prefix)
    interval = 1 / rate if rate else 0.0
    try:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(converse(client, seconds, interval) for _ in range(sessions))
        )
        elapsed = time.perf_counter() - started
    finally:
        await client.close()
    turns = sum(n for n, _, _ in results)
    replies = [x for _, r, _ in results for x in r]
    completions = [x for _, _, c in results for x in c]
    return turns, elapsed, replies, completions


async def run(
    nats_url: str, prefix: str, sessions: int, seconds: float, rate: float = 0.0
) -> list[str]:
    """``rate`` > 0: each session sends ``rate`` messages a second instead of back to back."""
    turns, elapsed, replies, completions = await measure(nats_url, prefix, sessions, seconds, rate)
    reply = latency_row(sessions, turns, elapsed, replies)
    done = statistics.quantiles(completions, n=100)
    if rate:
        reply[0] = f"{sessions} at {rate:.0f}/s each"
    return [*reply, f"{done[49]:.1f}", f"{done[98]:.1f}"]


@asynccontextmanager
async def serving(db: str, nats_url: str, runtimes: int = 1) -> AsyncIterator[str]:
    """``turnlog run`` serving the echo app on ``db`` in a child process, and
    ``runtimes`` - 1 more runtimes of it; yields the subject prefix they listen on once
    they have had time to share the app's partitions."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    env = dict(
        os.environ,
        TURNLOG_DATABASE_URL=db,
        TURNLOG_NATS_URL=nats_url,
        TURNLOG_SUBJECT_PREFIX=prefix,
        TURNLOG_LOG_LEVEL="warning",
        TURNLOG_HTTP_PORT=str(free_port()),
    )
    commands = [["run", str(APP)]] + [["serve", "runtime", str(APP)]] * (runtimes - 1)
    servers = [
        await asyncio.create_subprocess_exec(sys.executable, "-m", "turnlog", *c, env=env)
        for c in commands
    ]
    try:
        if runtimes > 1:
            await asyncio.sleep(SHARING)
        yield prefix
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            await asyncio.wait_for(server.wait(), timeout=60)


async def main(seconds: float, concurrency: list[int], runtimes: int) -> None:
    settings = Settings.from_env()
    with endpoints(settings) as where, server_url() as url:
        async with scratch_database(url) as db, serving(db, where.nats_url, runtimes) as prefix:
            rows = [await run(where.nats_url, prefix, n, seconds) for n in concurrency]
            # Chat-like load: 10 sessions sending at half the saturated rate, to show
            # the latency of a turn that does not queue behind others.
            rows.append(await run(where.nats_url, prefix, 10, seconds, rate=50))
    print()
    served = f"{runtimes} runtimes" if runtimes > 1 else "1 runtime"
    print(f"producer round trips through NATS, {served}, {seconds:.0f} s per row — {machine()}")
    print(
        table(
            [
                "concurrent sessions",
                "turns/s",
                "reply round trip p50 ms",
                "p99 ms",
                "completion p50 ms",
                "p99 ms",
            ],
            rows,
        )
    )
    print("targets: p50 < 5 ms and p99 < 20 ms at 10 sessions; >= 1,000 turns/s at 100")
    print("(rows 'N at R/s each' are paced: each session sends R messages a second)")


def arguments() -> tuple[float, list[int], int]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sessions", default="1,10,100")
    parser.add_argument("--runtimes", type=int, default=1)
    args = parser.parse_args()
    return args.seconds, [int(n) for n in args.sessions.split(",")], max(args.runtimes, 1)


if __name__ == "__main__":
    aio.run(main(*arguments()))
