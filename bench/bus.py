"""Round trips through NATS: a producer sends a message and waits for its turn's
completion event, with ``turnlog run`` serving the app in another process.

    python -m bench.bus [--seconds 5] [--sessions 1,10,100]

A round trip runs from the producer's publish on ``turnlog.in`` to the arrival of the
turn's ``session.turn_completed`` on ``turnlog.events`` (through the relay).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

from bench.common import (
    concurrency_args,
    latency_row,
    machine,
    scratch_database,
    server_url,
    table,
)
from turnlog.services.bus.client import Client
from turnlog.services.config import Settings
from turnlog.services.infra.endpoints import endpoints

APP = Path(__file__).with_name("echo_app.py")


async def converse(client: Client, seconds: float) -> tuple[int, list[float]]:
    session = client.session("echo", user={"id": "bench"})
    await session.send_message("warm up")
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        await session.send_message(f"m{n}")
        latencies.append((time.perf_counter() - started) * 1000)
        n += 1
    return n, latencies


async def run(nats_url: str, prefix: str, sessions: int, seconds: float) -> list[str]:
    client = await Client.connect(nats_url, prefix=prefix)
    try:
        started = time.perf_counter()
        results = await asyncio.gather(*(converse(client, seconds) for _ in range(sessions)))
        elapsed = time.perf_counter() - started
    finally:
        await client.close()
    latencies = [x for _, lat in results for x in lat]
    return latency_row(sessions, sum(n for n, _ in results), elapsed, latencies)


async def main(seconds: float, concurrency: list[int]) -> None:
    settings = Settings.from_env()
    with endpoints(settings) as where, server_url() as url:
        async with scratch_database(url) as db:
            prefix = f"bench{uuid.uuid4().hex[:8]}"
            env = dict(
                os.environ,
                TURNLOG_DATABASE_URL=db,
                TURNLOG_NATS_URL=where.nats_url,
                TURNLOG_SUBJECT_PREFIX=prefix,
                TURNLOG_LOG_LEVEL="warning",
            )
            server = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "turnlog", "run", str(APP), env=env
            )
            try:
                rows = [await run(where.nats_url, prefix, n, seconds) for n in concurrency]
            finally:
                server.terminate()
                await asyncio.wait_for(server.wait(), timeout=60)
    print()
    print(f"producer round trips through NATS, {seconds:.0f} s per row — {machine()}")
    print(table(["concurrent sessions", "turns/s", "round trip p50 ms", "p99 ms"], rows))
    print("targets: p50 < 5 ms and p99 < 20 ms at 10 sessions; >= 1,000 turns/s at 100")


if __name__ == "__main__":
    asyncio.run(main(*concurrency_args(__doc__ or "")))
