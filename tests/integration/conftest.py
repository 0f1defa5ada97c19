"""Fixtures for bus tests: a subject prefix of their own, turnlog serving in-process."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.bootstrap.serve import Parts, serve
from turnlog.services.sdk.app import App
from turnlog.services.settings import Settings

Start = Callable[..., Awaitable[asyncio.Task[None]]]


@pytest.fixture
async def start_serving(
    database_url: str, servers: Endpoints, prefix: str, tmp_path: Path
) -> AsyncIterator[Start]:
    tasks: list[asyncio.Task[None]] = []

    async def start(app: App | None, *, relay: bool = True) -> asyncio.Task[None]:
        settings = Settings(home=tmp_path, subject_prefix=prefix, ack_wait=2.0)
        ready = asyncio.Event()
        task = asyncio.create_task(
            serve(
                settings,
                database_url,
                servers.nats_url,
                Parts(app=app, relay=relay),
                ready=ready,
                handle_signals=False,
            )
        )
        tasks.append(task)
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait([task, waiting], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        assert ready.is_set(), "turnlog did not start serving"
        return task

    yield start
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _, running = await asyncio.wait(tasks, timeout=30)
    if running:  # a hang becomes a failure that shows where everything was waiting
        for task in asyncio.all_tasks():
            task.print_stack(file=sys.stderr)
        raise AssertionError("turnlog did not stop within 30 s of being cancelled")
