"""Persisted turns per second through the Session runtime, in process.

    python -m bench.turns [--seconds 5] [--sessions 1,10,100]

A turn is one inbound message, one reply and one ``session.data`` key, each recorded in
PostgreSQL before the next step (the message before the handler runs, the reply before
it is delivered, the data and the outcome at the end of the turn).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import turnlog
from bench.common import (
    concurrency_args,
    latency_row,
    machine,
    scratch_database,
    server_url,
    table,
)
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.app.sessions.host import SessionHost
from turnlog.services.app.sessions.turn import Inbound
from turnlog.services.bootstrap import aio
from turnlog.services.bootstrap.wiring import Wiring

app = turnlog.App("bench")


@app.message()
async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
    session.data["last"] = msg.text
    await session.reply(f"echo {msg.text}")


async def run(host: SessionHost, sessions: int, seconds: float) -> tuple[int, list[float]]:
    user = turnlog.UserInfo(id="bench")
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []

    async def converse() -> None:
        sid = uuid.uuid4()
        n = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await host.handle(
                Inbound(message_id=uuid.uuid4().hex, text=f"m{n}", user=user, session_id=sid)
            )
            latencies.append((time.perf_counter() - started) * 1000)
            n += 1

    await asyncio.gather(*(converse() for _ in range(sessions)))
    return len(latencies), latencies


async def main(seconds: float, concurrency: list[int]) -> None:
    rows = []
    with server_url() as url:
        async with scratch_database(url) as db:
            pool_size = min(max(concurrency) + 2, 40)
            store = await EventStore.connect(db, min_size=pool_size, max_size=pool_size)
            host = Wiring.postgres(store).host(app)
            await run(host, 4, 0.5)  # warm up
            for sessions in concurrency:
                turns, latencies = await run(host, sessions, seconds)
                rows.append(latency_row(sessions, turns, seconds, latencies))
            await host.stop()
            await store.close()
    print()
    print(f"persisted turns, {seconds:.0f} s per row — {machine()}")
    print(table(["concurrent sessions", "turns/s", "p50 ms", "p99 ms"], rows))
    print("targets: >= 2,000 turns/s at 100 sessions; p99 < 25 ms at 10 sessions")


if __name__ == "__main__":
    aio.run(main(*concurrency_args(__doc__ or "")))
