"""Background tasks on a real PostgreSQL and NATS: submitted from a handler, run on a
runtime worker from the task queue, every attempt on record, the task's card following
its status, replies from the task recorded on its session and delivered live."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import msgspec
import nats
import pytest

import turnlog
from tests.helpers import ALICE, inbound
from tests.integration.conftest import Start
from turnlog.contracts import bus
from turnlog.projections.catalog import PROJECTIONS
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.adapters.nats.task_worker import TaskWorker
from turnlog.services.adapters.nats.tasks import TaskQueue, stream_name
from turnlog.services.adapters.postgres.erasure import erase_user
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.projector.check import check as check_projections
from turnlog.services.adapters.postgres.projector.runner import Projector
from turnlog.services.app import context
from turnlog.services.app.log.errors import ConcurrencyConflict
from turnlog.services.app.log.records import RecordedEvent
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.sessions.host import SessionHost
from turnlog.services.app.sessions.outbound import NoDelivery
from turnlog.services.app.sessions.turn import TurnResult
from turnlog.services.app.tasks.poster import SessionPoster
from turnlog.services.bootstrap.wiring import Wiring

Event = tuple[str, dict[str, Any], str | None, str | None]  # type, payload, correlation, actor


@pytest.fixture(autouse=True)
async def drop_task_stream(servers: Endpoints, prefix: str) -> AsyncIterator[None]:
    yield
    nc = await nats.connect(servers.nats_url)
    with contextlib.suppress(Exception):
        await nc.jetstream().delete_stream(stream_name(Subjects(prefix)))
    await nc.close()


async def events_of(store: EventStore, stream_id: str) -> list[Event]:
    records: list[RecordedEvent] = await store.keyring.unseal(await store.read_stream(stream_id))
    return [(r.type, json.loads(r.payload), r.correlation_id, r.actor) for r in records]


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def reports_app() -> tuple[turnlog.App, dict[str, Any]]:
    """An app whose handler submits the task named by the message (arguments as JSON
    after it), shows its card and replies with the task id."""
    app = turnlog.App("reports")
    seen: dict[str, Any] = {"calls": Counter(), "stopped": []}

    @app.task(retries=2)
    async def build_report(session: turnlog.TaskSession, report_id: str) -> dict[str, Any]:
        assert turnlog.current_session() is session
        run = turnlog.current_task()
        assert run is not None and run.attempt == 1
        seen["integrations"] = dict(session.integrations)
        await run.progress(0.5, "halfway")
        await session.reply(f"report {report_id} is ready")
        return {"report_id": report_id, "rows": 3}

    @app.task(retries=2)
    async def flaky(session: turnlog.TaskSession, fail_times: int) -> str:
        run = turnlog.current_task()
        assert run is not None
        seen["calls"][run.id] += 1
        if seen["calls"][run.id] <= fail_times:
            raise RuntimeError(f"failure {seen['calls'][run.id]}")
        return "fine at last"

    @app.task(retries=1)
    async def broken(session: turnlog.TaskSession) -> None:
        raise ValueError("always broken")

    @app.task(timeout=0.5)
    async def slow(session: turnlog.TaskSession) -> None:
        await asyncio.sleep(30)

    @app.task
    async def forever(session: turnlog.TaskSession) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            seen["stopped"].append(session.task_id)

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        name, _, arguments = msg.text.partition(" ")
        task = app.tasks[name]
        handle = await task.submit(session=session, **json.loads(arguments or "{}"))
        await session.show_task(handle, message=f"{name} started")
        await session.reply(handle.task_id)

    return app, seen


class Chat:
    """A producer talking to the served app, with everything live on its session."""

    def __init__(self, client: turnlog.Client, prefix: str) -> None:
        self.client, self.prefix = client, prefix
        self.session = client.session("reports", user={"id": "alice", "email": "a@example.com"})
        self.live: list[bus.Live] = []
        self._listening = False

    async def submit(self, text: str) -> str:
        """Send ``text``; the id of the task the handler submitted."""
        if not self._listening:
            subject = Subjects(self.prefix).live("reports", self.session.id)
            await self.client.nc.subscribe(subject, cb=self._on_live)
            self._listening = True
        round_ = await self.session.send_message(text)
        assert round_.outcome == "ok", round_
        return round_.reply

    async def _on_live(self, msg: Any) -> None:
        self.live.append(msgspec.json.decode(msg.data, type=bus.Live))


@contextlib.contextmanager
def serving(app: turnlog.App, store: EventStore, talk: Chat) -> Iterator[None]:
    """Run the test's code as the app's own code in a process serving it: what
    ``TaskHandle.status()`` and ``cancel()`` reach (the app's tasks, its queue)."""
    queue = TaskQueue(talk.client.nc, Subjects(talk.prefix))
    token = context.runtime.set(Wiring.postgres(store, queue=queue).runtime(app))
    try:
        yield
    finally:
        context.runtime.reset(token)


@pytest.fixture
async def chat(
    start_serving: Start, servers: Endpoints, prefix: str
) -> AsyncIterator[tuple[Chat, turnlog.App, dict[str, Any]]]:
    app, seen = reports_app()
    await start_serving(app)
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        yield Chat(client, prefix), app, seen
    finally:
        await client.close()


async def card_of(store: EventStore, session_id: str, task_id: str) -> dict[str, Any] | None:
    cards = [
        p["payload"]
        for t, p, _, _ in await events_of(store, session_id)
        if t == "session.block_shown" and p["block_id"] == f"task:{task_id}"
    ]
    return cards[-1] if cards else None


async def card_reaches(store: EventStore, session_id: str, task_id: str, status: str) -> None:
    async def reached() -> bool:
        card = await card_of(store, session_id, task_id)
        return card is not None and card["status"] == status

    await until(reached)


async def test_a_task_submitted_from_a_handler_replies_and_its_card_reaches_completed(
    chat: tuple[Chat, turnlog.App, dict[str, Any]], store: EventStore
) -> None:
    talk, app, seen = chat
    await talk.client.connect_integration("alice", "github", {"token": "t-1"})
    task_id = await talk.submit('build_report {"report_id": "daily"}')
    sid = talk.session.id
    await card_reaches(store, sid, task_id, "completed")

    card = await card_of(store, sid, task_id)
    assert card == {
        "task_id": task_id, "message": "build_report started", "status": "completed",
        "attempt": 1, "progress": 0.5, "progress_message": "halfway",
        "result": {"report_id": "daily", "rows": 3}, "error": None,
    }  # fmt: skip
    task = await events_of(store, f"task:{task_id}")
    assert [t for t, _, _, _ in task] == [
        "task.submitted", "task.started", "task.progressed", "task.completed"
    ]  # fmt: skip
    submitted = task[0]
    assert submitted[1]["kwargs"] == {"report_id": "daily"}
    assert submitted[1]["session_id"] == sid and submitted[1]["user"]["id"] == "alice"
    received = next(e for e in await events_of(store, sid) if e[0] == "session.message_received")
    assert submitted[2] == received[1]["message_id"] and submitted[3] == "app:reports"
    assert {actor for _, _, _, actor in task[1:]} == {"task:build_report"}
    stored = (await store.read_stream(f"task:{task_id}"))[0].payload
    assert b"_sealed" in stored and b"daily" not in stored  # the arguments are alice's

    session = await events_of(store, sid)
    replies = [(p["text"], c, a) for t, p, c, a in session if t == "session.reply_sent"]
    assert ("report daily is ready", task_id, "task:build_report") in replies
    await until(lambda: _delivered(talk, "report daily is ready"))
    with serving(app, store, talk):
        status = await app.tasks["build_report"].handle(task_id).status()
    assert (status.status, status.attempts, status.result) == (
        "completed", 1, {"report_id": "daily", "rows": 3}
    )  # fmt: skip
    assert status.finished and status.progress == 0.5 and status.session_id == sid
    assert seen["integrations"] == {"github": {"token": "t-1"}}  # alice's, as in her turns


async def _delivered(talk: Chat, text: str) -> bool:
    return any(isinstance(m, bus.LiveReply) and m.text == text for m in talk.live)


async def test_failures_are_retried_on_record_until_an_attempt_succeeds(
    chat: tuple[Chat, turnlog.App, dict[str, Any]], store: EventStore
) -> None:
    talk, app, seen = chat
    task_id = await talk.submit('flaky {"fail_times": 2}')
    await card_reaches(store, talk.session.id, task_id, "completed")
    task = await events_of(store, f"task:{task_id}")
    assert [(t, p.get("attempt"), p.get("will_retry")) for t, p, _, _ in task] == [
        ("task.submitted", None, None),
        ("task.started", 1, None), ("task.failed", 1, True),
        ("task.started", 2, None), ("task.failed", 2, True),
        ("task.started", 3, None), ("task.completed", None, None),
    ]  # fmt: skip
    assert [p["error_message"] for t, p, _, _ in task if t == "task.failed"] == [
        "failure 1", "failure 2"
    ]  # fmt: skip
    assert seen["calls"][task_id] == 3
    with serving(app, store, talk):
        status = await app.tasks["flaky"].handle(task_id).status()
    assert (status.status, status.attempts, status.result) == ("completed", 3, "fine at last")


async def test_a_task_that_always_fails_ends_failed_with_its_error_on_the_card(
    chat: tuple[Chat, turnlog.App, dict[str, Any]], store: EventStore
) -> None:
    talk, app, _ = chat
    task_id = await talk.submit("broken")
    await card_reaches(store, talk.session.id, task_id, "failed")
    task = await events_of(store, f"task:{task_id}")
    failures = [p for t, p, _, _ in task if t == "task.failed"]
    assert [(p["attempt"], p["will_retry"]) for p in failures] == [(1, True), (2, False)]
    assert {(p["error_type"], p["error_message"]) for p in failures} == {
        ("ValueError", "always broken")
    }
    card = await card_of(store, talk.session.id, task_id)
    assert card is not None and card["attempt"] == 2 and card["result"] is None
    assert card["error"] == {"type": "ValueError", "message": "always broken"}
    with serving(app, store, talk):
        status = await app.tasks["broken"].handle(task_id).status()
    assert (status.status, status.error_type, status.error_message) == (
        "failed", "ValueError", "always broken"
    )  # fmt: skip


async def test_an_attempt_past_its_timeout_fails_with_timeout_error(
    chat: tuple[Chat, turnlog.App, dict[str, Any]], store: EventStore
) -> None:
    talk, _, _ = chat
    started = time.monotonic()
    task_id = await talk.submit("slow")
    await card_reaches(store, talk.session.id, task_id, "failed")
    assert time.monotonic() - started < 10
    task = await events_of(store, f"task:{task_id}")
    assert [t for t, _, _, _ in task] == ["task.submitted", "task.started", "task.failed"]
    failed = task[-1][1]
    assert failed["error_type"] == "TimeoutError" and failed["will_retry"] is False
    assert "0.5 s" in failed["error_message"]


async def test_cancel_stops_a_running_task_on_record_and_on_its_card(
    chat: tuple[Chat, turnlog.App, dict[str, Any]], store: EventStore
) -> None:
    talk, app, seen = chat
    task_id = await talk.submit("forever")
    handle = app.tasks["forever"].handle(task_id)
    await card_reaches(store, talk.session.id, task_id, "running")
    with serving(app, store, talk):
        assert (await handle.status()).status == "running"
        assert await handle.cancel("no longer needed") is True
    await card_reaches(store, talk.session.id, task_id, "cancelled")
    await until(lambda: _true(seen["stopped"] == [task_id]))  # the attempt was stopped
    task = await events_of(store, f"task:{task_id}")
    assert [t for t, _, _, _ in task] == ["task.submitted", "task.started", "task.cancelled"]
    assert task[-1][1] == {"reason": "no longer needed"} and task[-1][3] == "app:reports"
    with serving(app, store, talk):
        assert (await handle.status()).status == "cancelled"
        assert await handle.cancel() is False  # finished: nothing more is recorded
    assert len(await events_of(store, f"task:{task_id}")) == 3


async def _true(value: bool) -> bool:
    return value


async def test_the_tasks_view_keeps_each_tasks_status_and_attempts_and_rebuilds_the_same(
    chat: tuple[Chat, turnlog.App, dict[str, Any]], store: EventStore
) -> None:
    talk, _, _ = chat
    sid = talk.session.id
    ids = {
        "ok": await talk.submit('build_report {"report_id": "weekly"}'),
        "retried": await talk.submit('flaky {"fail_times": 1}'),
        "failed": await talk.submit("broken"),
    }
    for key, status in (("ok", "completed"), ("retried", "completed"), ("failed", "failed")):
        await card_reaches(store, sid, ids[key], status)
    projector = Projector(store, list(PROJECTIONS.values()))
    running = asyncio.create_task(projector.run())
    try:
        await projector.caught_up()
        rows = {
            r["task_id"]: r
            for r in await store.pool.fetch(
                "SELECT task_id, name, session_id, user_id, status, attempts, error_type,"
                " started_at <= finished_at AS in_order FROM turnlog_tasks"
            )
        }
        checks = await check_projections(store, [PROJECTIONS["tasks"]])
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert {k: tuple(rows[i].values())[1:] for k, i in ids.items()} == {
        "ok": ("build_report", sid, "alice", "completed", 1, None, True),
        "retried": ("flaky", sid, "alice", "completed", 2, "RuntimeError", True),
        "failed": ("broken", sid, "alice", "failed", 2, "ValueError", True),
    }
    assert checks and all(c.ok for c in checks)


async def test_erasing_the_submitting_user_erases_a_tasks_arguments_and_result(
    chat: tuple[Chat, turnlog.App, dict[str, Any]], store: EventStore
) -> None:
    talk, app, _ = chat
    task_id = await talk.submit('build_report {"report_id": "secret-plan"}')
    await card_reaches(store, talk.session.id, task_id, "completed")
    report = await erase_user(store, "alice", reason="asked", actor="operator:test")
    assert report.events_sealed > 0
    with serving(app, store, talk):
        status = await app.tasks["build_report"].handle(task_id).status()
    assert (status.status, status.result, status.progress_message) == (
        "completed", "[erased]", "[erased]"
    )  # fmt: skip
    submitted = (await events_of(store, f"task:{task_id}"))[0][1]
    assert submitted["kwargs"] == {"_erased": True} and submitted["user"]["email"] is None


async def test_two_workers_share_the_queue_and_each_task_runs_once(
    store: EventStore, database_url: str, servers: Endpoints, prefix: str
) -> None:
    app = turnlog.App("crunch")
    runs: Counter[str] = Counter()

    @app.task
    async def square(session: turnlog.TaskSession, n: int) -> int:
        run = turnlog.current_task()
        assert run is not None
        runs[run.id] += 1
        await asyncio.sleep(0.2)
        await session.notify(f"{n} squared")
        return n * n

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        handle = await square.submit(n=int(msg.text))  # from the current session
        await session.show_task(handle, message="squaring")
        await session.reply(handle.task_id)

    subjects = Subjects(prefix)
    started: list[tuple[asyncio.Task[None], SessionHost, EventStore, Any]] = []
    try:
        for name in ("w1", "w2"):  # two processes' worth: own pool, NATS connection, host
            pool = await EventStore.connect(database_url, min_size=1, max_size=5)
            nc = await nats.connect(servers.nats_url)
            queue = TaskQueue(nc, subjects)
            wiring = Wiring.postgres(pool, queue=queue)
            host = wiring.host(app, NoDelivery())
            poster = SessionPoster(host)
            worker = TaskWorker(
                app, wiring.tasks, queue, poster, runtime=host.runtime, worker=name, concurrency=2
            )
            started.append((asyncio.create_task(worker.run()), host, pool, nc))
        first = started[0][1]  # the session's turns run here; tasks on either worker
        sid = None
        task_ids = []
        for n in range(12):
            result = await turn(first, str(n), sid)
            sid = result.session_id
            task_ids.append(result.reply)
        handles = [square.handle(task_id) for task_id in task_ids]

        async def all_done() -> bool:
            return all([(await h.status()).finished for h in handles])

        serving = context.runtime.set(first.runtime)  # as the app's code in that process
        try:
            await until(all_done)
        finally:
            context.runtime.reset(serving)
        for n, task_id in enumerate(task_ids):
            await card_reaches(store, str(sid), task_id, "completed")
            card = await card_of(store, str(sid), task_id)
            assert card is not None and card["result"] == n * n
    finally:
        for job, host, pool, nc in started:
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
            await host.stop()
            await nc.close()
            await pool.close()
    workers: Counter[str] = Counter()
    for task_id in task_ids:
        events = await events_of(store, f"task:{task_id}")
        assert [t for t, _, _, _ in events] == ["task.submitted", "task.started", "task.completed"]
        workers[events[1][1]["worker"]] += 1
    assert sorted(runs) == sorted(task_ids) and set(runs.values()) == {1}
    assert set(workers) == {"w1", "w2"}
    session = await events_of(store, str(sid))
    notified = [p["text"] for t, p, _, _ in session if t == "session.notified"]
    assert sorted(notified) == sorted(f"{n} squared" for n in range(12))
    assert [t for t, _, _, _ in session].count("session.turn_completed") == 12


async def turn(host: SessionHost, text: str, sid: uuid.UUID | None) -> TurnResult:
    """A turn on ``host``, delivered again when a task on the other worker wrote to the
    session first (as the ingress has JetStream redeliver it)."""
    message_id = uuid.uuid4().hex
    for _ in range(50):
        try:
            return await host.handle(inbound(text, ALICE, sid, message_id=message_id))
        except ConcurrencyConflict:
            await asyncio.sleep(0.05)
    raise AssertionError("the turn kept conflicting")


async def test_attempts_cut_off_by_a_stopping_or_dead_worker_are_recorded_and_run_again(
    store: EventStore, servers: Endpoints, prefix: str
) -> None:
    app = turnlog.App("crunch")
    attempts: list[tuple[str, int]] = []

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        pass

    @app.task(retries=1)
    async def job(session: turnlog.TaskSession) -> str:
        run = turnlog.current_task()
        assert run is not None
        attempts.append((run.id, run.attempt))
        if run.attempt == 1:
            await asyncio.sleep(3600)
        return "done"

    nc = await nats.connect(servers.nats_url)
    queue = TaskQueue(nc, Subjects(prefix))
    wiring = Wiring.postgres(store, queue=queue)
    tasks, runtime = wiring.tasks, wiring.runtime(app)
    serving = context.runtime.set(runtime)  # the test submits as the app's code would

    def worker(name: str) -> asyncio.Task[None]:
        return asyncio.create_task(
            TaskWorker(app, tasks, queue, None, runtime=runtime, worker=name, stop_grace=0.1).run()
        )

    try:
        stopped = await job.submit()
        first = worker("w1")
        await until(lambda: _status_is(stopped, "running"))
        first.cancel()  # the worker stops: the attempt is cut off after the grace period
        await asyncio.gather(first, return_exceptions=True)
        assert (await stopped.status()).status == "retrying"

        lost = await job.submit()  # its first attempt "runs" on a worker that then dies
        record = await tasks.load(lost.task_id)
        record.start("ghost", at=record.modified_on)
        await tasks.save(record, Metadata(actor="task:job"))

        second = worker("w2")
        try:
            await until(lambda: _status_is(stopped, "completed"))
            await until(lambda: _status_is(lost, "completed"))
        finally:
            second.cancel()
            await asyncio.gather(second, return_exceptions=True)
    finally:
        context.runtime.reset(serving)
        await nc.close()
    runs = {}
    for handle in (stopped, lost):
        events = await events_of(store, f"task:{handle.task_id}")
        runs[handle.task_id] = [
            (t, p.get("worker") or p.get("error_type"), p.get("will_retry"))
            for t, p, _, _ in events[1:]
        ]
    assert runs[stopped.task_id] == [
        ("task.started", "w1", None),
        ("task.failed", "WorkerStopped", True),
        ("task.started", "w2", None),
        ("task.completed", None, None),
    ]
    assert runs[lost.task_id] == [
        ("task.started", "ghost", None),
        ("task.failed", "WorkerLost", True),
        ("task.started", "w2", None),
        ("task.completed", None, None),
    ]
    assert sorted(attempts) == sorted(
        [(stopped.task_id, 1), (stopped.task_id, 2), (lost.task_id, 2)]
    )


async def _status_is(handle: turnlog.TaskHandle, status: str) -> bool:
    return (await handle.status()).status == status
