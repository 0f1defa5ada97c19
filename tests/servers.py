"""The real servers tests and documentation examples run against: the embedded
PostgreSQL and NATS started in a temporary home (always stopped at the end), or the
external ones named by TURNLOG_DATABASE_URL / TURNLOG_NATS_URL."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import nats

from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.embedded.processes import InfraError
from turnlog.services.adapters.embedded.servers import EmbeddedInfra
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.settings import Settings

HOME_PREFIX = "turnlog-test-"


def new_home() -> Path:
    """A temporary data directory another system user can traverse (PostgreSQL runs as
    one when the tests run as root)."""
    home = Path(tempfile.mkdtemp(prefix=HOME_PREFIX))
    home.chmod(0o755)
    return home


STALE_AFTER = 600.0
"""Seconds a test home must be left untouched before it may be reaped: a run that is
starting its servers holds no lease on them yet."""


def reap_stale_homes() -> None:
    """Stop and remove test homes left by a test run that was killed: no live holder (as
    seen under the home's lock, so not a run of another work tree starting its servers
    this moment), and untouched for a while."""
    for home in Path(tempfile.gettempdir()).glob(f"{HOME_PREFIX}*"):
        try:
            if time.time() - home.stat().st_mtime < STALE_AFTER:
                continue
            EmbeddedInfra(home).down()  # refuses while a live process holds the servers
        except (InfraError, OSError):
            continue
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def running_servers() -> Iterator[Endpoints]:
    """The servers to test against, for the duration of the block: the external ones when
    both URLs are set, else embedded ones on free ports in a temporary home, stopped and
    removed afterwards."""
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


async def create_database(server_url: str, name: str) -> str:
    """A new database ``name`` on the server; its URL."""
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return with_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def delete_streams(nats_url: str, prefix: str) -> None:
    """Remove the streams, buckets and consumers made under subject prefix ``prefix``."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    subjects = Subjects(prefix)
    for stream in (
        subjects.stream_in,
        subjects.stream_events,
        subjects.stream_dlq,
        f"{prefix.upper()}_TASKS",
    ):
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
    with contextlib.suppress(Exception):
        await js.delete_key_value(f"{prefix.upper()}_APPS")
    with contextlib.suppress(Exception):
        await js.delete_object_store(subjects.bucket_files)
    await nc.close()
