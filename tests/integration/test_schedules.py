"""Schedules on a real PostgreSQL: each tick runs once across workers, overlapping ticks
are skipped on record, a scheduled handler acts as its owner with no one to reply to,
and how every run ended is on record."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

import turnlog
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.postgres.claims import PostgresClaims
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.schedules.log import ScheduleLog
from turnlog.services.app.schedules.scheduler import Scheduler
from turnlog.services.bootstrap.wiring import Wiring

TICKER = Path(__file__).resolve().parents[1] / "apps" / "ticker.py"
EVERY_SECOND = "* * * * * *"

Event = tuple[str, dict[str, Any], str | None]  # type, payload, correlation id


async def events_of(store: EventStore, stream_id: str) -> list[Event]:
    return [
        (r.type, msgspec.json.decode(r.payload), r.correlation_id)
        for r in await store.read_stream(stream_id)
    ]


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


def claims_per_tick(events: list[Event]) -> Counter[str]:
    """How many times each tick was fired or skipped."""
    return Counter(p["tick"] for t, p, _ in events if t in ("schedule.fired", "schedule.skipped"))


@pytest.fixture
async def workers(
    database_url: str,
) -> AsyncIterator[Callable[[turnlog.App], Awaitable[list[Scheduler]]]]:
    """Two runtime workers' schedulers for an app, each on its own connection pool."""
    started: list[tuple[Scheduler, EventStore]] = []

    async def start(app: turnlog.App, stop_grace: float = 5.0) -> list[Scheduler]:
        for name in ("w1", "w2"):
            store = await EventStore.connect(database_url, min_size=1, max_size=5)
            scheduler = Wiring.postgres(store).scheduler(app, worker=name, stop_grace=stop_grace)
            await scheduler.start()
            started.append((scheduler, store))
        return [s for s, _ in started]

    yield start
    for scheduler, store in started:
        await scheduler.stop()
        await store.close()


def spawn(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "turnlog", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def test_a_schedule_fires_once_per_tick_with_two_runtime_processes(
    cli_env: dict[str, str], store: EventStore, servers: Endpoints, prefix: str
) -> None:
    # Two runtimes of one app on one prefix: one consumes its messages, the other stands
    # by; both run its schedules, which are decided in the database.
    processes = [
        spawn(cli_env, "serve", "runtime", str(TICKER)),
        spawn(cli_env, "serve", "runtime", str(TICKER)),
    ]
    stream = "schedule:ticker:tick"
    try:

        async def five_runs_completed() -> bool:
            for p in processes:
                assert p.poll() is None, p.stderr.read().decode() if p.stderr else ""
            events = await events_of(store, stream)
            return sum(t == "schedule.completed" for t, _, _ in events) >= 5

        await until(five_runs_completed, timeout=40)  # includes both processes starting
        assert all(p.poll() is None for p in processes), "both workers are alive"
    finally:
        for p in processes:
            p.send_signal(signal.SIGTERM)
        for p in processes:
            assert p.wait(timeout=30) == 0
    events = await events_of(store, stream)
    fired = [p for t, p, _ in events if t == "schedule.fired"]
    assert claims_per_tick(events).most_common(1)[0][1] == 1  # no tick claimed twice
    ticks = [p["tick"] for p in fired]
    assert len(fired) >= 5 and ticks == sorted(ticks)
    written = await store.read_documents_written_by([f"{stream}@{as_run(t)}" for t in ticks])
    assert len(written) == len(ticks)  # one document per run, correlated with its run
    docs = [
        msgspec.json.decode(row[0])
        for row in await store.pool.fetch(
            "SELECT doc FROM turnlog_documents WHERE app = 'ticker' AND collection = 'runs'"
        )
    ]
    assert sorted(d["tick"] for d in docs) == sorted(as_run(t) for t in ticks)
    assert {d["pid"] for d in docs} <= {p.pid for p in processes}
    printed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "turnlog", "events", stream],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    shown = printed.stdout.splitlines()
    assert [line.split()[1] for line in shown] == [t for t, _, _ in events]


def as_run(recorded: str) -> str:
    """A recorded tick (RFC 3339, ``Z``) as the handler sees it (``isoformat()``)."""
    return datetime.fromisoformat(recorded).isoformat()


async def test_two_workers_in_one_database_run_each_tick_once(
    store: EventStore, workers: Callable[[turnlog.App], Awaitable[list[Scheduler]]]
) -> None:
    app = turnlog.App("pulse")
    runs: list[str] = []

    @app.schedule(EVERY_SECOND)
    async def beat(session: turnlog.ScheduledSession) -> None:
        assert session is turnlog.current_session()
        runs.append(session.tick.isoformat())

    await workers(app)
    await until(lambda: _completed(store, "schedule:pulse:beat", 4))
    events = await events_of(store, "schedule:pulse:beat")
    fired = [p for t, p, _ in events if t == "schedule.fired"]
    assert set(claims_per_tick(events).values()) == {1}
    assert len(runs) == len(set(runs)) >= 4  # the handler's own side effect, once per tick
    assert {p["worker"] for p in fired} <= {"w1", "w2"}


async def _completed(store: EventStore, stream: str, n: int) -> bool:
    events = await events_of(store, stream)
    return sum(t == "schedule.completed" for t, _, _ in events) >= n


async def test_a_run_slower_than_the_interval_skips_ticks_as_overlap_never_two_at_once(
    store: EventStore, workers: Callable[[turnlog.App], Awaitable[list[Scheduler]]]
) -> None:
    app = turnlog.App("slowpoke")
    running = 0
    most = 0

    @app.schedule(EVERY_SECOND)
    async def crawl() -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(2.5)
        finally:
            running -= 1

    await workers(app)
    await until(lambda: _completed(store, "schedule:slowpoke:crawl", 2))
    events = await events_of(store, "schedule:slowpoke:crawl")
    assert most == 1
    assert set(claims_per_tick(events).values()) == {1}  # each skip recorded once
    skipped = [p for t, p, _ in events if t == "schedule.skipped"]
    assert len(skipped) >= 2 and {p["reason"] for p in skipped} == {"overlap"}
    open_run = None
    for t, p, _ in events:  # no tick fired while another run was open
        if t == "schedule.fired":
            assert open_run is None
            open_run = p["tick"]
        elif t == "schedule.skipped":
            assert p["running_tick"] == open_run
        elif t == "schedule.completed":
            assert p["tick"] == open_run and p["outcome"] == "ok"
            assert p["duration_ms"] >= 2500
            open_run = None


async def test_current_session_is_a_synthetic_session_of_the_owner_with_no_reply_target(
    store: EventStore,
) -> None:
    app = turnlog.App("owned")
    team = app.collection("team", scope="owner")
    seen: list[Any] = []

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        await session.reply("hi")

    @app.schedule(EVERY_SECOND, owner="org:acme")
    async def report() -> None:
        session = turnlog.current_session()
        seen.append(session)
        assert isinstance(session, turnlog.ScheduledSession)
        await session.db.team.insert_one({"report": session.tick.isoformat()})
        await session.reply("nobody hears this")

    scheduler = Wiring.postgres(store).scheduler(app, worker="w1")
    await scheduler.start()
    try:
        await until(lambda: _completed(store, "schedule:owned:report", 1))
    finally:
        await scheduler.stop()
    session = seen[0]
    assert isinstance(session, turnlog.ScheduledSession)
    assert session.user.id == "org:acme" and session.user.owner_id == "org:acme"
    assert dict(session.integrations) == {} and session.channel.type == "schedule"
    with pytest.raises(TypeError):
        session.integrations["x"] = 1  # type: ignore[index]
    with pytest.raises(turnlog.NoReplyTarget, match="no one to reply to"):
        session.notify("nor this")
    events = await events_of(store, "schedule:owned:report")
    completed = next(p for t, p, _ in events if t == "schedule.completed")
    assert completed["outcome"] == "failed" and completed["error_type"] == "NoReplyTarget"
    assert "session.reply()" in completed["error_message"]
    run_id = next(c for t, _, c in events if t == "schedule.fired")
    written = await store.read_documents_written_by([run_id])
    assert [msgspec.json.decode(r.payload)["owner"] for r in written] == ["org:acme"]
    assert await team.bind(session).count() >= 1


async def test_a_failing_handler_is_recorded_failed_and_the_next_tick_still_runs(
    store: EventStore,
) -> None:
    app = turnlog.App("flaky")
    calls = 0

    @app.schedule(EVERY_SECOND)
    def sometimes() -> None:  # a plain def works too
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("the first run fails")

    scheduler = Wiring.postgres(store).scheduler(app, worker="w1")
    await scheduler.start()
    try:
        await until(lambda: _completed(store, "schedule:flaky:sometimes", 2))
    finally:
        await scheduler.stop()
    outcomes = [
        (p["outcome"], p["error_type"], p["error_message"])
        for t, p, _ in await events_of(store, "schedule:flaky:sometimes")
        if t == "schedule.completed"
    ]
    assert outcomes[0] == ("failed", "ValueError", "the first run fails")
    assert outcomes[1] == ("ok", None, None)


async def test_a_run_left_open_by_a_dead_worker_is_recorded_interrupted_then_ticks_go_on(
    store: EventStore,
) -> None:
    app = turnlog.App("orphan")
    ran = asyncio.Event()

    @app.schedule(EVERY_SECOND)
    async def job() -> None:
        ran.set()

    # a worker that died mid-run: its run is on record as fired, and its lease is gone
    stream = ScheduleLog(store, app.schedules["job"], PostgresClaims(store.pool))
    record = await stream.load()
    now = datetime.now(UTC)
    record.fire(app.schedules["job"].cron.latest_at_or_before(now), "dead-worker", at=now)
    await stream.save(record, Metadata(actor="app:orphan"))

    scheduler = Wiring.postgres(store).scheduler(app, worker="w1")
    await scheduler.start()
    try:
        await asyncio.wait_for(ran.wait(), timeout=10)
        await until(lambda: _completed(store, "schedule:orphan:job", 1))
    finally:
        await scheduler.stop()
    types = [(t, p.get("worker")) for t, p, _ in await events_of(store, "schedule:orphan:job")]
    assert types[:4] == [
        ("schedule.fired", "dead-worker"),
        ("schedule.interrupted", "dead-worker"),
        ("schedule.fired", "w1"),
        ("schedule.completed", None),
    ]


async def test_stopping_a_worker_cancels_a_run_past_the_grace_period_on_record(
    store: EventStore,
) -> None:
    app = turnlog.App("sleepy")
    started = asyncio.Event()

    @app.schedule(EVERY_SECOND)
    async def nap() -> None:
        started.set()
        await asyncio.sleep(60)

    scheduler = Wiring.postgres(store).scheduler(app, worker="w1", stop_grace=0.2)
    await scheduler.start()
    await asyncio.wait_for(started.wait(), timeout=10)
    await scheduler.stop()
    assert scheduler.running() == 0
    events = await events_of(store, "schedule:sleepy:nap")
    assert events[-1][0] == "schedule.completed"
    assert events[-1][1]["outcome"] == "cancelled"
    assert events[-1][1]["error_type"] == "RunCancelled"


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("every hour", "has 2 fields"),
        ("61 * * * *", "out of range"),
        ("0 0 31 2 *", "invalid cron expression"),
        ("* * * * * * *", "has 7 fields"),
    ],
)
def test_an_invalid_cron_is_refused_when_the_schedule_is_declared(cron: str, message: str) -> None:
    app = turnlog.App("wrong")
    with pytest.raises(turnlog.AppError, match=message):
        app.schedule(cron)


def test_schedule_declarations_are_checked() -> None:
    app = turnlog.App("checked")
    with pytest.raises(turnlog.AppError, match="unknown time zone"):
        app.schedule("0 9 * * *", tz="Mars/Olympus")

    @app.schedule("@hourly")
    def hourly() -> None: ...

    with pytest.raises(turnlog.AppError, match="already has a schedule 'hourly'"):
        app.schedule("0 * * * *", name="hourly")(lambda: None)
    with pytest.raises(turnlog.AppError, match="schedule name"):
        app.schedule("0 * * * *", name="a.b")(lambda: None)
    assert app.schedules["hourly"].owner.id == "app:checked"
