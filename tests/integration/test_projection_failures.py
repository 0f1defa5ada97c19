"""A projection that cannot apply an event stops there alone, says so (PostgreSQL,
status, /healthz, a log line) and resumes once it can: on retry or at the next start."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import ClassVar

import msgspec
import pytest
from structlog.testing import capture_logs

from turnlog.projections.base import Event, Exec, Projection, Write
from turnlog.projections.catalog import PROJECTIONS
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.projector import failures
from turnlog.services.adapters.postgres.projector.runner import Projector
from turnlog.services.app.log.records import NewEvent
from turnlog.services.bootstrap.health import health
from turnlog.services.bootstrap.supervision import Supervisor
from turnlog.services.cli.projections import status


def said(text: str, type_name: str = "test.said") -> NewEvent:
    return NewEvent(
        type=type_name,
        schema_version=1,
        payload=msgspec.json.encode({"text": text}),
        recorded_at=datetime.now(UTC),
        actor="user:u1",
    )


class Fragile:
    """A projection whose table refuses the stream ``bad`` (a CHECK constraint, so the
    failure is PostgreSQL's), until ``fixed``; it applies one row per event."""

    name: ClassVar[str] = "fragile"
    tables: ClassVar[tuple[str, ...]] = ("test_fragile",)
    ddl: ClassVar[tuple[str, ...]] = (
        "CREATE TABLE {s}.test_fragile (position bigint PRIMARY KEY, stream_id text NOT NULL"
        " CHECK (stream_id <> 'bad'))",
    )
    fixed = False

    def apply(self, events: Sequence[Event]) -> list[Write]:
        rows = [(e.position, "ok" if self.fixed else e.stream_id) for e in events]
        return [Exec("INSERT INTO {s}.test_fragile VALUES ($1, $2)", rows)] if rows else []


@pytest.fixture
async def running(store: EventStore) -> AsyncIterator[tuple[Projector, Fragile]]:
    fragile = Fragile()
    projections: list[Projection] = [*PROJECTIONS.values(), fragile]
    projector = Projector(store, projections, retry_poll=0.1)
    task = asyncio.create_task(projector.run())
    await asyncio.wait_for(projector.ready.wait(), 10)
    yield projector, fragile
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def positions(store: EventStore) -> dict[str, int]:
    rows = await store.pool.fetch("SELECT name, position FROM turnlog_projection_positions")
    return {r[0]: r[1] for r in rows}


async def until(check, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.05)


async def test_a_projection_that_cannot_apply_an_event_stops_alone_and_says_so(
    store: EventStore, running: tuple[Projector, Fragile], cli_env: dict[str, str]
) -> None:
    projector, _ = running
    with capture_logs() as logs:
        for i in range(20):
            await store.append(f"s{i}", 0, [said("fine")])
        [bad] = await store.append("bad", 0, [said("poison")])
        for i in range(20, 40):
            await store.append(f"s{i}", 0, [said("fine")])
        await projector.caught_up()
    last = await store.last_position()
    stored = await positions(store)
    assert stored["fragile"] == bad.position - 1  # every event before the bad one applied
    assert all(stored[name] == last for name in PROJECTIONS)  # the others went on
    assert await store.pool.fetchval("SELECT count(*) FROM test_fragile") == bad.position - 1

    [failure] = (await failures.load(store.pool)).values()
    assert (failure.name, failure.position, failure.stream_id, failure.version) == (
        "fragile", bad.position, "bad", 1,
    )  # fmt: skip
    assert failure.event_type == "test.said"
    assert failure.error.startswith("CheckViolationError: ")
    [line] = [entry for entry in logs if entry["event"].startswith("projection stopped")]
    assert line["projection"] == "fragile" and line["position"] == bad.position
    assert line["log_level"] == "error"

    shown = {s.name: s for s in await status(store, sample=0.1)}
    assert all(shown[name].state == "ok" for name in PROJECTIONS)
    degraded = await health(store.pool, Supervisor())
    assert (degraded.ok, degraded.status) == (False, "degraded")
    assert [f.name for f in degraded.failed_projections] == ["fragile"]
    status_cli = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "turnlog", "infra", "status"], env=cli_env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert status_cli.returncode == 4, status_cli.stdout + status_cli.stderr
    assert f"projection fragile FAILED at position {bad.position:,}" in status_cli.stdout


async def test_a_retried_projection_goes_on_from_where_it_stopped(
    store: EventStore, running: tuple[Projector, Fragile]
) -> None:
    projector, fragile = running
    [bad] = await store.append("bad", 0, [said("poison")])
    await store.append("after", 0, [said("fine")])
    await until(lambda: _failed(store))
    fragile.fixed = True  # what an upgrade would do
    assert [f.position for f in await failures.retry(store.pool, ["fragile"])] == [bad.position]
    last = await store.last_position()
    await until(lambda: _at(store, "fragile", last))
    assert await failures.load(store.pool) == {}
    assert "fragile" not in projector.failed
    assert (await health(store.pool, Supervisor())).ok


async def test_every_start_tries_a_failed_projection_again(store: EventStore) -> None:
    fragile = Fragile()
    first = Projector(store, [fragile])
    await store.append("bad", 0, [said("poison")])
    task = asyncio.create_task(first.run())
    await until(lambda: _failed(store))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    fragile.fixed = True  # the next version can apply it
    second = Projector(store, [fragile])
    task = asyncio.create_task(second.run())
    try:
        await second.caught_up()
        assert (await positions(store))["fragile"] == await store.last_position()
        assert await failures.load(store.pool) == {}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_event_nobody_can_read_fails_each_projection_that_reaches_it(
    store: EventStore, running: tuple[Projector, Fragile]
) -> None:
    projector, _ = running
    await store.append("s1", 0, [said("fine")])
    unreadable = NewEvent(
        type="session.reply_sent", schema_version=1, payload=b"{not json",
        recorded_at=datetime.now(UTC),
    )  # fmt: skip
    [poison] = await store.append("s2", 0, [unreadable])
    await store.append("s3", 0, [said("fine")])
    await until(lambda: _all_failed(store, {*PROJECTIONS, "fragile"}))
    stored = await positions(store)
    assert all(stored[name] == poison.position - 1 for name in PROJECTIONS)
    failed = await failures.load(store.pool)
    assert {f.position for f in failed.values()} == {poison.position}
    assert all(f.event_type == "session.reply_sent" for f in failed.values())
    assert all("DecodeError" in f.error for f in failed.values())
    await store.append("s4", 0, [said("still fine")])  # appends go on; nothing stopped
    await asyncio.sleep(0.3)
    assert set(projector.failed) == {*PROJECTIONS, "fragile"}


async def _failed(store: EventStore) -> bool:
    return "fragile" in await failures.load(store.pool)


async def _all_failed(store: EventStore, names: set[str]) -> bool:
    return set(await failures.load(store.pool)) == names


async def _at(store: EventStore, name: str, position: int) -> bool:
    return (await positions(store)).get(name, 0) >= position
