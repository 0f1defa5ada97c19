"""A schedule's record: which ticks ran and how each run ended, which were skipped.

One stream per schedule holds it. Each worker serving the app folds the stream to decide
what a tick means: run it, skip it (a run of an earlier tick is still going), or nothing
(another worker has it already). The decision is appended at the version it was made
from, so of several workers deciding about one tick, exactly one is recorded.

The record is an aggregate like the others; its stream is named after the schedule.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from eventsourcing.domain import Aggregate

from turnlog.domain import values
from turnlog.domain.errors import DomainError
from turnlog.domain.values import empty

OUTCOMES = ("ok", "failed", "cancelled")


class ScheduleError(DomainError):
    """Raised when a command on a schedule's record would break one of its rules."""

    code = "schedule_error"


class TickTaken(ScheduleError):
    """Raised when a tick is fired or skipped that is not after the last one recorded."""

    code = "tick_taken"

    def __init__(self, tick: datetime, last: datetime) -> None:
        self.tick, self.last = tick, last
        super().__init__(f"tick {tick.isoformat()} is not after the last recorded, {last}")


class RunInProgress(ScheduleError):
    """Raised when a tick is fired while the run of an earlier tick is still open."""

    code = "run_in_progress"

    def __init__(self, tick: datetime) -> None:
        self.tick = tick
        super().__init__(f"the run of tick {tick.isoformat()} has not completed")


class NoRunInProgress(ScheduleError):
    """Raised when a run is completed, interrupted or overlapped but none is open."""

    code = "no_run_in_progress"

    def __init__(self) -> None:
        super().__init__("no scheduled run is in progress")


@dataclass(frozen=True)
class Run:
    """A run that was fired and has not completed (yet)."""

    tick: datetime
    worker: str


_STREAMS = uuid.UUID("5c7c3c2e-6a43-4d36-9d0e-0f1f2f7e7a61")


class ScheduleRecord(Aggregate):
    """The state of one schedule. Its stream exists from the first tick recorded, so a
    record starts empty (``new``) at version 0 rather than with a creation event."""

    class Fired(Aggregate.Event):
        app: str
        schedule: str
        tick: datetime
        worker: str

        def apply(self, record: ScheduleRecord) -> None:
            record.last_tick = self.tick
            record.running = Run(self.tick, self.worker)

    class Skipped(Aggregate.Event):
        tick: datetime
        reason: str
        running_tick: datetime
        worker: str

        def apply(self, record: ScheduleRecord) -> None:
            record.last_tick = self.tick

    class Interrupted(Aggregate.Event):
        tick: datetime
        worker: str
        reason: str

        def apply(self, record: ScheduleRecord) -> None:
            record.running = None

    class Completed(Aggregate.Event):
        tick: datetime
        outcome: str
        duration_ms: float
        error_type: str | None
        error_message: str | None

        def apply(self, record: ScheduleRecord) -> None:
            record.running = None

    app: str
    name: str
    last_tick: datetime | None
    running: Run | None

    @classmethod
    def new(cls, app: str, name: str) -> ScheduleRecord:
        """The record of a schedule nothing was recorded for yet (version 0)."""
        record = empty(cls, uuid.uuid5(_STREAMS, f"{app}\0{name}"))
        record.app, record.name, record.last_tick, record.running = app, name, None, None
        return record

    def has(self, tick: datetime) -> bool:
        """Whether ``tick`` (or a later one) is on record already: fired or skipped."""
        return self.last_tick is not None and tick <= self.last_tick

    # -- commands -----------------------------------------------------------------------

    def fire(self, tick: datetime, worker: str, *, at: datetime) -> None:
        self._check_new(tick)
        if self.running is not None:
            raise RunInProgress(self.running.tick)
        self.trigger_event(
            self.Fired, app=self.app, schedule=self.name, tick=tick, worker=worker, timestamp=at
        )

    def skip(self, tick: datetime, worker: str, *, at: datetime) -> None:
        """Record that ``tick`` does not run because the open run overlaps it."""
        self._check_new(tick)
        if self.running is None:
            raise NoRunInProgress()
        self.trigger_event(
            self.Skipped, tick=tick, reason="overlap", running_tick=self.running.tick,
            worker=worker, timestamp=at,
        )  # fmt: skip

    def interrupt(self, reason: str, *, at: datetime) -> None:
        """Close the open run whose worker is gone."""
        if self.running is None:
            raise NoRunInProgress()
        run = self.running
        self.trigger_event(
            self.Interrupted, tick=run.tick, worker=run.worker,
            reason=values.error_text(reason), timestamp=at,
        )  # fmt: skip

    def complete(
        self,
        outcome: str,
        duration_ms: float,
        error_type: str | None = None,
        error_message: str | None = None,
        *,
        at: datetime,
    ) -> None:
        if self.running is None:
            raise NoRunInProgress()
        if outcome not in OUTCOMES:
            raise ScheduleError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        self.trigger_event(
            self.Completed,
            tick=self.running.tick,
            outcome=outcome,
            duration_ms=duration_ms,
            error_type=None if error_type is None else values.error_text(error_type, 256),
            error_message=None if error_message is None else values.error_text(error_message),
            timestamp=at,
        )

    def _check_new(self, tick: datetime) -> None:
        if self.last_tick is not None and tick <= self.last_tick:
            raise TickTaken(tick, self.last_tick)
