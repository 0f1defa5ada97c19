"""A runtime worker's share of an app's tasks: it pulls task ids from the app's work
queue (shared by every worker serving the app, each message to one of them), runs each
task to its end and acknowledges it only then. A long task keeps its message marked in
progress, so the queue gives it to another worker only when this one is gone."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time

import msgspec
import nats.errors
import structlog
from nats.aio.msg import Msg

from turnlog.contracts.tasks import TaskCancelNotice
from turnlog.services.adapters.nats.tasks import TaskQueue, queued_decoder
from turnlog.services.app.cancelling import checkpoint
from turnlog.services.app.context import Runtime
from turnlog.services.app.spec import AppSpec
from turnlog.services.app.tasks.log import TaskLog
from turnlog.services.app.tasks.poster import SessionPoster
from turnlog.services.app.tasks.run import TaskRunner
from turnlog.services.app.tasks.values import UnknownTask

log = structlog.get_logger("turnlog.tasks")

CONCURRENCY = 16
STOP_GRACE = 10.0
RECORD_GRACE = 10.0  # seconds to record how cut-off attempts ended
PULL_WAIT = 1.0  # seconds a pull request waits for a task


def default_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class TaskWorker:
    """Runs an app's queued tasks, up to ``concurrency`` at once, until cancelled. When
    cancelled it takes no more, gives running tasks ``stop_grace`` seconds, then cuts
    them off: each such attempt is recorded failed (``WorkerStopped``) and, with
    attempts left, handed back to the queue for another worker."""

    def __init__(
        self,
        app: AppSpec,
        tasks: TaskLog,
        queue: TaskQueue,
        poster: SessionPoster | None,
        *,
        runtime: Runtime | None = None,
        worker: str | None = None,
        concurrency: int = CONCURRENCY,
        ack_wait: float = 30.0,
        stop_grace: float = STOP_GRACE,
    ) -> None:
        self.app, self.tasks, self.queue, self.poster = app, tasks, queue, poster
        self.runtime = runtime or Runtime(app.name)
        self.worker = worker or default_worker()
        self.ack_wait = max(ack_wait, 1.0)
        self.stop_grace = stop_grace
        self._room = asyncio.Semaphore(concurrency)
        self._runners: dict[str, TaskRunner] = {}
        self._handling: set[asyncio.Task[None]] = set()
        self._working: dict[int, Msg] = {}
        self._pulled_at = 0.0

    async def run(self) -> None:
        sub = await self.queue.consumer(self.app.name, self.ack_wait)
        notices = await self.queue.on_cancel(self.app.name, self._cancel)
        heartbeat = asyncio.create_task(self._keep_in_progress())
        log.info("task worker started", app=self.app.name, worker=self.worker)
        try:
            while True:
                checkpoint()
                await self._room.acquire()
                try:
                    self._pulled_at = time.monotonic()
                    messages = await sub.fetch(1, timeout=PULL_WAIT)
                except nats.errors.TimeoutError:
                    self._room.release()
                    continue
                except BaseException:
                    self._room.release()
                    raise
                for msg in messages:
                    task = asyncio.create_task(self._handle(msg))
                    self._handling.add(task)
                    task.add_done_callback(self._done)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(Exception):
                await notices.unsubscribe()
            await self._stop_running()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def running(self) -> list[str]:
        """The ids of the tasks this worker runs now."""
        return list(self._runners)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._handling.discard(task)
        self._room.release()

    async def _handle(self, msg: Msg) -> None:
        try:
            task_id = queued_decoder.decode(msg.data).task_id
        except msgspec.DecodeError as e:
            log.error("not a task on the task queue", subject=msg.subject, error=str(e))
            await msg.term()
            return
        if task_id in self._runners:
            return  # delivered again while it runs here: its first delivery is acked
        runner = TaskRunner(self.app, self.tasks, self.poster, self.worker, task_id, self.runtime)
        self._runners[task_id] = runner
        self._working[id(msg)] = msg
        try:
            with structlog.contextvars.bound_contextvars(task_id=task_id, correlation_id=task_id):
                finished = await runner.run()
        except UnknownTask:
            log.error("a queued task is not on record", task_id=task_id)
            finished = True
        except Exception as e:  # not the task's fault (database or bus away): again later
            log.error("running a task failed; will retry", task_id=task_id, error=str(e))
            with contextlib.suppress(Exception):
                await msg.nak(delay=1)
            return
        finally:
            self._runners.pop(task_id, None)
            self._working.pop(id(msg), None)
        if not finished:
            await self._after_last_pull()
        with contextlib.suppress(Exception):
            await (msg.ack() if finished else msg.nak())

    async def _after_last_pull(self) -> None:
        """Wait until this worker's last pull request has expired: a task handed back
        before then could be handed to that request again, where no one reads it now."""
        delay = self._pulled_at + PULL_WAIT + 0.2 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _cancel(self, notice: TaskCancelNotice) -> None:
        runner = self._runners.get(notice.task_id)
        if runner is not None:
            log.info("stopping a cancelled task", task_id=notice.task_id)
            runner.cancel(notice.reason)

    async def _keep_in_progress(self) -> None:
        while True:
            checkpoint()
            await asyncio.sleep(self.ack_wait / 3)
            for msg in list(self._working.values()):
                with contextlib.suppress(Exception):
                    await msg.in_progress()

    async def _stop_running(self) -> None:
        running = set(self._handling)
        if not running:
            return
        _, late = await asyncio.wait(running, timeout=self.stop_grace)
        if late:
            for runner in list(self._runners.values()):
                runner.stop()
            _, stuck = await asyncio.wait(late, timeout=RECORD_GRACE)
            for task in stuck:  # left to the queue: delivered again after ack_wait
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
