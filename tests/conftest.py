"""Real servers for the tests: the embedded PostgreSQL and NATS started in a temporary
home (always stopped at the end), or the external ones named by TURNLOG_DATABASE_URL /
TURNLOG_NATS_URL. Every test that touches PostgreSQL gets a database of its own."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import nats
import pytest
import structlog

from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.embedded.processes import free_port
from turnlog.services.adapters.embedded.servers import EmbeddedInfra
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.settings import Settings

HOME_PREFIX = "turnlog-test-"


def pytest_configure(config: pytest.Config) -> None:
    """Logs with plain tracebacks: structlog's default renders each logged traceback
    with every local variable, which takes minutes for a large hostile value."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
        ]
    )


API_KEY = "test-read-key-0123456789"


def new_home() -> Path:
    """A temporary data directory another system user can traverse (PostgreSQL runs as
    one when the tests run as root)."""
    home = Path(tempfile.mkdtemp(prefix=HOME_PREFIX))
    home.chmod(0o755)
    return home


def reap_stale_homes() -> None:
    """Stop and remove test homes left by a test run that was killed: no live holder."""
    for home in Path(tempfile.gettempdir()).glob(f"{HOME_PREFIX}*"):
        infra = EmbeddedInfra(home)
        if infra.status().holders:
            continue
        infra.down(force=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def servers() -> Iterator[Endpoints]:
    settings = Settings.from_env()
    if settings.database_url and settings.nats_url:
        yield Endpoints(settings.database_url, settings.nats_url, False, False)
        return
    reap_stale_homes()
    home = new_home()
    infra = EmbeddedInfra(home)
    try:
        status = infra.acquire(postgres=not settings.database_url, nats=not settings.nats_url)
        yield Endpoints(
            settings.database_url or (status.postgres.url if status.postgres else ""),
            settings.nats_url or (status.nats.url if status.nats else ""),
            not settings.database_url,
            not settings.nats_url,
        )
    finally:
        infra.down(force=True)
        shutil.rmtree(home, ignore_errors=True)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.asynccontextmanager
async def fresh_database(servers: Endpoints) -> AsyncIterator[str]:
    """The URL of a new, empty database on ``servers``, dropped afterwards."""
    name = f"turnlog_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(servers.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield with_database(servers.database_url, name)
    finally:
        admin = await asyncpg.connect(servers.database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


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
    nc = await nats.connect(servers.nats_url)
    js = nc.jetstream()
    subjects = Subjects(name)
    for stream in (subjects.stream_in, subjects.stream_events, subjects.stream_dlq):
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
    with contextlib.suppress(Exception):
        await js.delete_key_value(f"{name.upper()}_APPS")
    with contextlib.suppress(Exception):
        await js.delete_object_store(subjects.bucket_files)
    await nc.close()


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
