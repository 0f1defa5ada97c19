"""Runs an app's schedules in a runtime worker: each tick exactly once across workers.

Every worker serving the app wakes at each tick and tries to record it on the schedule's
stream at the version it read; the event store's version check lets exactly one succeed.
The winner records ``schedule.fired`` and runs the handler (holding the schedule's lease
while it does), or, when a run of an earlier tick is still going, records
``schedule.skipped`` (overlap). Ticks that passed while no worker ran are not run.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from datetime import datetime, timedelta
from typing import Any

import structlog

from turnlog.domain.errors import TurnlogError
from turnlog.services.app import context
from turnlog.services.app.context import Runtime
from turnlog.services.app.integrations import Integrations
from turnlog.services.app.log.errors import ConcurrencyConflict
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.ports import Claim, Claims, EventLog
from turnlog.services.app.schedules.log import ScheduleLog
from turnlog.services.app.sessions.turn import call_hook
from turnlog.services.app.spec import AppSpec
from turnlog.services.app.spec import ScheduleSpec as Schedule

log = structlog.get_logger("turnlog.schedules")

CLAIM_RETRY = 0.05  # seconds between looks while another worker holds the lease
MAX_CLAIM_SECONDS = 30.0
STOP_GRACE = 10.0


class RunCancelled(TurnlogError):
    """The error type recorded when a scheduled run is cancelled because its worker
    stopped and the run outlasted the grace period."""

    code = "run_cancelled"


def default_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Scheduler:
    """The schedules of one app in one worker. ``stop()`` stops claiming ticks, lets
    running handlers finish for ``stop_grace`` seconds, then cancels the rest (each
    recorded as ``cancelled``)."""

    def __init__(
        self,
        app: AppSpec,
        store: EventLog,
        claims: Claims,
        *,
        runtime: Runtime | None = None,
        worker: str | None = None,
        stop_grace: float = STOP_GRACE,
        integrations: Integrations | None = None,
    ) -> None:
        self.app, self.store, self.claims = app, store, claims
        self.runtime = runtime or Runtime(app.name)
        self.integrations = integrations or Integrations(store)
        self.worker = worker or default_worker()
        self.stop_grace = stop_grace
        self._stopping = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._runs: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        for schedule in self.app.schedules.values():
            self._loops.append(
                asyncio.create_task(self._loop(schedule), name=f"schedule {schedule.stream_id}")
            )
        if self._loops:
            log.info("schedules started", app=self.app.name, schedules=list(self.app.schedules))

    async def stop(self) -> None:
        self._stopping.set()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()
        runs = set(self._runs)
        if runs:
            _, late = await asyncio.wait(runs, timeout=self.stop_grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*runs, return_exceptions=True)

    async def run_due(self, since: datetime, until: datetime) -> list[str]:
        """Fire each schedule's latest tick in ``(since, until]`` (as the loop does after
        a late wake) and wait for the runs to end: for a clock someone else moves (tests).
        The runs fired, as ``<schedule stream>@<tick>``."""
        fired = []
        for schedule in self.app.schedules.values():
            tick = schedule.cron.latest_at_or_before(until)
            if tick > since:
                started = len(self._runs)
                await self._claim(schedule, tick, give_up_at=until)
                if len(self._runs) > started:
                    fired.append(_meta(schedule, tick).correlation_id or "")
        await asyncio.gather(*self._runs, return_exceptions=True)
        return fired

    def running(self) -> int:
        """How many scheduled handlers this worker is running now."""
        return len(self._runs)

    # -- ticks --------------------------------------------------------------------------

    async def _loop(self, schedule: Schedule) -> None:
        tick = schedule.cron.next_after(self.runtime.clock())
        while await self._wait_until(tick):
            # after a late wake (a blocked loop), only the latest due tick is tried
            due = max(tick, schedule.cron.latest_at_or_before(self.runtime.clock()))
            tick = schedule.cron.next_after(due)
            try:
                await self._claim(schedule, due, give_up_at=tick)
            except Exception as e:
                log.error(
                    "claiming a tick failed",
                    schedule=schedule.stream_id,
                    tick=due.isoformat(),
                    error=str(e),
                    exc_info=(type(e), e, e.__traceback__),
                )

    async def _wait_until(self, moment: datetime) -> bool:
        """False if the scheduler is stopping before ``moment``."""
        while (delay := (moment - self.runtime.clock()).total_seconds()) > 0:
            try:
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
                return False
            except TimeoutError:
                continue  # the timer may fire a little early: look at the clock again
        return not self._stopping.is_set()

    async def _claim(self, schedule: Schedule, tick: datetime, give_up_at: datetime) -> None:
        """Record ``tick`` as fired (and start the run) or skipped, unless another worker
        recorded it first."""
        stream = ScheduleLog(self.store, schedule, self.claims)
        meta = _meta(schedule, tick)
        give_up_at = min(give_up_at, self.runtime.clock() + timedelta(seconds=MAX_CLAIM_SECONDS))
        while True:
            lease = await stream.lease()
            try:
                record = await stream.load()
                if record.has(tick):
                    return  # another worker has it
                if lease is None and record.running is None:
                    # another worker holds the lease to record a tick: look again
                    if self.runtime.clock() >= give_up_at or self._stopping.is_set():
                        log.warning("tick left to others", schedule=schedule.stream_id)
                        return
                    await asyncio.sleep(CLAIM_RETRY)
                    continue
                if lease is None:
                    record.skip(tick, self.worker, at=self.runtime.clock())
                else:
                    if record.running is not None:
                        record.interrupt(
                            "its worker stopped before the run completed",
                            at=self.runtime.clock(),
                        )
                    record.fire(tick, self.worker, at=self.runtime.clock())
                try:
                    await stream.save(record, meta)
                except ConcurrencyConflict:
                    continue  # another worker recorded something meanwhile: decide again
                if lease is None:
                    log.info(
                        "tick skipped: the previous run is still going",
                        schedule=schedule.stream_id,
                        correlation_id=meta.correlation_id,
                    )
                else:
                    self._start_run(schedule, tick, stream, lease)
                    lease = None
                return
            finally:
                if lease is not None:
                    await lease.release()

    # -- runs ---------------------------------------------------------------------------

    def _start_run(
        self, schedule: Schedule, tick: datetime, stream: ScheduleLog, lease: Claim
    ) -> None:
        task = asyncio.create_task(self._run(schedule, tick, stream, lease))
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)

    async def _run(
        self, schedule: Schedule, tick: datetime, stream: ScheduleLog, lease: Claim
    ) -> None:
        meta = _meta(schedule, tick)
        token = context.runtime.set(self.runtime)
        failed: Exception | None = None
        found: dict[str, Any] = {}
        try:
            # the owner's, read when the run starts (a failure fails the run)
            found = await self.integrations.for_user(schedule.owner.id)
        except Exception as e:
            failed = e
        session = self.app.facades.scheduled(
            stream_id=schedule.stream_id, schedule=schedule.name, tick=tick,
            user=schedule.owner, meta=meta, integrations=found, runtime=self.runtime,
        )  # fmt: skip
        caller = context.caller.set(session)
        started = time.monotonic()
        error: BaseException | None = None
        try:
            with structlog.contextvars.bound_contextvars(
                schedule=schedule.stream_id, correlation_id=meta.correlation_id
            ):
                try:
                    if failed is not None:
                        raise failed
                    await call_hook(schedule.handler, session)
                except asyncio.CancelledError:
                    # only stop() cancels a run: record it, then end normally
                    _uncancel()
                    error = RunCancelled("the worker stopped before the run completed")
                except Exception as e:
                    error = e
                    log.error(
                        "scheduled run failed",
                        error=str(e),
                        exc_info=(type(e), e, e.__traceback__),
                    )
                duration_ms = (time.monotonic() - started) * 1000
                await self._complete(stream, tick, meta, duration_ms, error)
        finally:
            context.caller.reset(caller)
            context.runtime.reset(token)
            await lease.release()

    async def _complete(
        self,
        stream: ScheduleLog,
        tick: datetime,
        meta: Metadata,
        duration_ms: float,
        error: BaseException | None,
    ) -> None:
        outcome = "ok" if error is None else "failed"
        if isinstance(error, RunCancelled):
            outcome = "cancelled"
        for attempt in range(10):
            try:
                record = await stream.load()
                if record.running is None or record.running.tick != tick:
                    log.warning("scheduled run already closed on record", outcome=outcome)
                    return
                record.complete(
                    outcome,
                    round(duration_ms, 3),
                    type(error).__name__ if error is not None else None,
                    str(error) if error is not None else None,
                    at=self.runtime.clock(),
                )
                await stream.save(record, meta)
                log.info("scheduled run completed", outcome=outcome, duration_ms=duration_ms)
                return
            except ConcurrencyConflict:
                continue  # a skipped tick was recorded meanwhile
            except Exception as e:
                log.warning("recording a scheduled run failed; retrying", error=str(e))
                await asyncio.sleep(min(0.1 * 2**attempt, 5.0))
        log.error("could not record how a scheduled run ended", outcome=outcome)


def _meta(schedule: Schedule, tick: datetime) -> Metadata:
    """One run's ids: everything it records correlates with ``<stream id>@<tick>``."""
    run_id = f"{schedule.stream_id}@{tick.isoformat()}"
    return Metadata(correlation_id=run_id, causation_id=run_id, actor=f"app:{schedule.app_name}")


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
