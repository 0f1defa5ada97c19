"""Shared set-up for benchmarks: a scratch database on the configured or embedded server."""

from __future__ import annotations

import platform
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil

from turnlog.services.config import Settings
from turnlog.services.infra.endpoints import endpoints


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
