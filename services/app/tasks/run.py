"""Running one queued task to its end on this worker: attempt after attempt, each
recorded as it starts, progresses and ends, the task's card following along.

What is on record decides: a task found finished is not run; an attempt found running
lost its worker and is recorded failed (``WorkerLost``); an outcome that comes after a
cancellation was recorded is dropped (the first on record wins).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import structlog

from turnlog.domain.errors import DomainError, TurnlogError
from turnlog.domain.task import COMPLETED, RUNNING, Task, TaskError
from turnlog.services.app import context
from turnlog.services.app.context import Runtime
from turnlog.services.app.log.errors import ConcurrencyConflict
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.spec import AppSpec
from turnlog.services.app.tasks.log import TaskLog
from turnlog.services.app.tasks.poster import CardFollower, SessionPoster
from turnlog.services.app.values import UserInfo

log = structlog.get_logger("turnlog.tasks")


class WorkerStopped(TurnlogError):
    """The error type recorded when an attempt is cut off because its worker stopped."""

    code = "worker_stopped"


class WorkerLost(TurnlogError):
    """The error type recorded for an attempt whose worker died while running it."""

    code = "worker_lost"


def card_fields(task: Task) -> dict[str, Any]:
    """What the task's card shows of its record (besides its id and message)."""
    error = task.error if task.status in ("failed", "retrying") else None
    return {
        "status": task.status,
        "attempt": task.attempts,
        "progress": task.progress,
        "progress_message": task.progress_message,
        "result": task.result if task.status == COMPLETED else None,
        "error": {"type": error[0], "message": error[1]} if error else None,
    }


class TaskRunner:
    """One task on this worker. ``run()`` returns True when the task is finished or
    left for a retry on record (ack its message), False to have it delivered again
    (it was cut off by a stopping worker, with attempts left)."""

    def __init__(
        self,
        app: AppSpec,
        tasks: TaskLog,
        poster: SessionPoster | None,
        worker: str,
        task_id: str,
        runtime: Runtime | None = None,
    ) -> None:
        self.app, self.tasks, self.poster = app, tasks, poster
        self.runtime = runtime or Runtime(app.name)
        self.worker, self.task_id = worker, task_id
        self.cancelled: str | None = None  # why, once a cancellation was announced
        self.stopping = False
        self._attempt: asyncio.Task[Any] | None = None
        self._task: Task | None = None
        self._card: CardFollower | None = None

    def cancel(self, reason: str) -> None:
        """A cancellation is on record: stop the running attempt."""
        self.cancelled = reason
        if self._attempt is not None:
            self._attempt.cancel()

    def stop(self) -> None:
        """The worker stops: cut the running attempt off (recorded ``WorkerStopped``)."""
        self.stopping = True
        if self._attempt is not None:
            self._attempt.cancel()

    async def run(self) -> bool:
        task = self._task = await self.tasks.load(self.task_id)
        meta = Metadata(
            correlation_id=self.task_id, causation_id=self.task_id, actor=f"task:{task.name}"
        )
        self._card = CardFollower(self.poster, task.session_id, self.task_id, meta)
        try:
            return await self._attempts(meta)
        finally:
            await self._card.drain()

    async def _attempts(self, meta: Metadata) -> bool:
        while True:
            task = self._task
            assert task is not None
            if task.finished:
                self._show(task)
                return True
            if self.stopping:
                return False
            if task.status == RUNNING:
                await self._record(meta, lambda t: _lost(t, self.runtime.clock()))
                continue
            attempt = task.attempts + 1
            if not await self._record(
                meta, lambda t: t.start(self.worker, at=self.runtime.clock())
            ):
                continue
            outcome = await self._run_attempt(attempt, meta)
            if self.cancelled is not None or self._attempt_moved_on(attempt):
                self._task = await self.tasks.load(self.task_id)
                continue  # the cancellation (or another worker) is on record already
            await self._record_outcome(attempt, outcome, meta)
            if self.stopping and not (self._task is not None and self._task.finished):
                return False

    def _attempt_moved_on(self, attempt: int) -> bool:
        return self._task is None or self._task.attempts != attempt

    async def _run_attempt(self, attempt: int, meta: Metadata) -> BaseException | _Result:
        task = self._task
        assert task is not None
        definition = self.app.tasks.get(task.name)
        if definition is None:
            return LookupError(f"app {self.app.name!r} has no task {task.name!r} here")
        try:
            session = await self._session(task)
        except Exception as e:  # the user's integrations could not be read
            return e
        run = self.app.facades.task_run(
            self.task_id, task.name, attempt, lambda p, m: self._progress(p, m, meta)
        )
        started = time.monotonic()
        call = _call(definition.fn, session, run, self.runtime, task.kwargs)
        self._attempt = asyncio.create_task(call)
        if self.cancelled is not None or self.stopping:
            self._attempt.cancel()  # came while the attempt was being recorded
        try:
            done, _ = await asyncio.wait({self._attempt}, timeout=task.timeout or None)
        finally:
            if not self._attempt.done():
                self._attempt.cancel()
                await asyncio.gather(self._attempt, return_exceptions=True)
        attempt_task, self._attempt = self._attempt, None
        duration = time.monotonic() - started
        log.info("task attempt ended", task_id=self.task_id, attempt=attempt, seconds=duration)
        if not done:
            return TimeoutError(f"task {task.name!r} ran longer than its {task.timeout:g} s")
        if attempt_task.cancelled():
            return WorkerStopped("the worker stopped before the attempt completed")
        error = attempt_task.exception()
        if error is not None:
            log.warning(
                "task attempt failed",
                task_id=self.task_id,
                error=str(error),
                exc_info=(type(error), error, error.__traceback__),
            )
            return error
        return _Result(attempt_task.result())

    async def _record_outcome(
        self, attempt: int, outcome: BaseException | _Result, meta: Metadata
    ) -> None:
        def record(task: Task) -> None:
            if task.status != RUNNING or task.attempts != attempt:
                raise TaskError(f"attempt {attempt} is no longer the one running")
            if isinstance(outcome, _Result):
                try:
                    task.complete(outcome.value, at=self.runtime.clock())
                    return
                except DomainError as e:  # a result that is not plain JSON
                    failure: BaseException = e
            else:
                failure = outcome
            task.fail(_type(failure), str(failure) or _type(failure), at=self.runtime.clock())

        await self._record(meta, record)

    async def _progress(self, value: float | None, message: str, meta: Metadata) -> None:
        await self._record(
            meta, lambda t: t.report_progress(value, message, at=self.runtime.clock())
        )

    async def _record(self, meta: Metadata, command: Callable[[Task], None]) -> bool:
        """Apply ``command`` to the task as recorded and append it; read again and retry
        on a conflict. False when the command no longer applies (the task moved on)."""
        for _ in range(20):
            task = self._task
            assert task is not None
            try:
                command(task)
            except DomainError as e:
                log.info("task moved on", task_id=self.task_id, reason=str(e))
                self._task = await self.tasks.load(self.task_id)
                return False
            try:
                await self.tasks.save(task, meta)
            except ConcurrencyConflict:
                self._task = await self.tasks.load(self.task_id)
                continue
            self._show(task)
            return True
        raise ConcurrencyConflict(f"task:{self.task_id}", -1, -1)

    def _show(self, task: Task) -> None:
        if self._card is not None:
            self._card.follow(card_fields(task))

    async def _session(self, task: Task) -> Any:
        user = task.user
        integrations: Mapping[str, Any] = {}
        if user is not None and self.poster is not None:
            integrations = await self.poster.integrations(user.id)
        return self.app.facades.task_session(
            task_id=self.task_id,
            name=task.name,
            session_id=task.session_id,
            user=UserInfo(id=user.id, email=user.email, org_id=user.org_id)
            if user is not None
            else UserInfo(id=f"app:{self.app.name}"),
            poster=self.poster or _NoPoster(),
            integrations=integrations,
            runtime=self.runtime,
        )


class _Result:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _NoPoster:
    async def post(self, session_id: str, meta: Metadata, item: Any) -> None:
        raise RuntimeError("this worker serves no sessions")


async def _call(
    fn: Callable[..., Awaitable[Any]], session: Any, run: Any, runtime: Runtime,
    kwargs: dict[str, Any],
) -> Any:  # fmt: skip
    tokens = (context.caller.set(session), context.task.set(run), context.runtime.set(runtime))
    try:
        return await fn(session, **kwargs)
    finally:
        context.runtime.reset(tokens[2])
        context.task.reset(tokens[1])
        context.caller.reset(tokens[0])


def _lost(task: Task, at: datetime) -> None:
    """Record the running attempt failed: its worker is gone (its message came back)."""
    error = WorkerLost(f"worker {task.worker} stopped during attempt {task.attempts}")
    task.fail(_type(error), str(error), at=at)


def _type(error: BaseException) -> str:
    return type(error).__name__
