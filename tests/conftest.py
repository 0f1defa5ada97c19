"""Fixtures of the tests on real servers (the servers themselves are started by the
``servers`` fixture of the top-level conftest.py): every test that touches PostgreSQL gets
a database of its own, every test on the bus a NATS subject prefix of its own."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.servers import (  # noqa: F401 (new_home and with_database: imported from here)
    create_database,
    delete_streams,
    drop_database,
    new_home,
    with_database,
)
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.embedded.processes import free_port
from turnlog.services.adapters.postgres.eventstore import EventStore

API_KEY = "test-read-key-0123456789"


@contextlib.asynccontextmanager
async def fresh_database(servers: Endpoints) -> AsyncIterator[str]:
    """The URL of a new, empty database on ``servers``, dropped afterwards."""
    name = f"turnlog_test_{uuid.uuid4().hex[:12]}"
    url = await create_database(servers.database_url, name)
    try:
        yield url
    finally:
        await drop_database(servers.database_url, name)


@pytest.fixture
async def database_url(servers: Endpoints) -> AsyncIterator[str]:
    async with fresh_database(servers) as url:
        yield url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    store = await EventStore.connect(database_url, min_size=2, max_size=20)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def prefix(servers: Endpoints) -> AsyncIterator[str]:
    """A NATS subject prefix (and so streams and consumers) of this test's own."""
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    await delete_streams(servers.nats_url, name)


@pytest.fixture
def cli_env(database_url: str, servers: Endpoints, tmp_path: Path, prefix: str) -> dict[str, str]:
    """Environment for running the turnlog command against this test's database, with
    NATS subjects of its own."""
    env = dict(os.environ)
    env.update(
        TURNLOG_DATABASE_URL=database_url,
        TURNLOG_NATS_URL=servers.nats_url,
        TURNLOG_HOME=str(tmp_path / "home"),
        TURNLOG_LOG_LEVEL="warning",
        TURNLOG_SUBJECT_PREFIX=prefix,
        TURNLOG_HTTP_PORT=str(free_port()),
        TURNLOG_API_KEYS=f"{API_KEY}:read",
    )
    return env
