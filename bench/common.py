"""Shared set-up for benchmarks: a scratch database on the configured or embedded server."""

from __future__ import annotations

import argparse
import platform
import statistics
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil

from turnlog.services.adapters.embedded.endpoints import endpoints
from turnlog.services.settings import Settings


@contextmanager
def server_url(nats: bool = False) -> Iterator[str]:
    """The configured PostgreSQL, or the embedded one (started if needed)."""
    with endpoints(Settings.from_env(), nats=nats) as where:
        yield where.database_url


@asynccontextmanager
async def scratch_database(url: str) -> AsyncIterator[str]:
    name = f"turnlog_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        admin = await asyncpg.connect(url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def machine() -> str:
    return (
        f"{platform.node()}: {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"
    )


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def latency_row(sessions: int, turns: int, seconds: float, latencies: list[float]) -> list[str]:
    """A table row (sessions, turns/s, p50, p99), also printed as progress."""
    q = statistics.quantiles(latencies, n=100)
    rate = turns / seconds
    print(
        f"  {sessions} sessions: {rate:,.0f} turns/s, p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms",
        flush=True,
    )
    return [str(sessions), f"{rate:,.0f}", f"{q[49]:.1f}", f"{q[98]:.1f}"]


def concurrency_args(doc: str) -> tuple[float, list[int]]:
    """``--seconds`` per row and ``--sessions`` (comma-separated concurrency levels)."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sessions", default="1,10,100")
    args = parser.parse_args()
    return args.seconds, [int(n) for n in args.sessions.split(",")]
