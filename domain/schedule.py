"""A schedule's record: which ticks ran and how each run ended, which were skipped.

One stream per schedule holds it. Each worker serving the app folds the stream to decide
what a tick means: run it, skip it (a run of an earlier tick is still going), or nothing
(another worker has it already). The decision is appended at the version it was made
from, so of several workers deciding about one tick, exactly one is recorded.

The record is small and its stream is named, not numbered, so it is folded straight from
its payloads rather than through an ``eventsourcing`` aggregate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from turnlog.contracts import events as ev
from turnlog.domain import values
from turnlog.domain.errors import DomainError

OUTCOMES = ("ok", "failed", "cancelled")


class ScheduleError(DomainError):
    """Raised when a command on a schedule's record would break one of its rules."""


class TickTaken(ScheduleError):
    """Raised when a tick is fired or skipped that is not after the last one recorded."""

    def __init__(self, tick: datetime, last: datetime) -> None:
        self.tick, self.last = tick, last
        super().__init__(f"tick {tick.isoformat()} is not after the last recorded, {last}")


class RunInProgress(ScheduleError):
    """Raised when a tick is fired while the run of an earlier tick is still open."""

    def __init__(self, tick: datetime) -> None:
        self.tick = tick
        super().__init__(f"the run of tick {tick.isoformat()} has not completed")


class NoRunInProgress(ScheduleError):
    """Raised when a run is completed, interrupted or overlapped but none is open."""

    def __init__(self) -> None:
        super().__init__("no scheduled run is in progress")


@dataclass(frozen=True)
class Run:
    """A run that was fired and has not completed (yet)."""

    tick: datetime
    worker: str


class ScheduleRecord:
    """The state of one schedule, folded from its events; commands add pending events."""

    def __init__(self, app: str, name: str) -> None:
        self.app, self.name = app, name
        self.version = 0
        self.last_tick: datetime | None = None
        self.running: Run | None = None
        self._pending: list[ev.EventPayload] = []

    @classmethod
    def fold(cls, app: str, name: str, payloads: Iterable[ev.EventPayload]) -> ScheduleRecord:
        record = cls(app, name)
        for payload in payloads:
            record._apply(payload)
        return record

    def has(self, tick: datetime) -> bool:
        """Whether ``tick`` (or a later one) is on record already: fired or skipped."""
        return self.last_tick is not None and tick <= self.last_tick

    # -- commands -----------------------------------------------------------------------

    def fire(self, tick: datetime, worker: str) -> None:
        self._check_new(tick)
        if self.running is not None:
            raise RunInProgress(self.running.tick)
        self._trigger(ev.ScheduleFired(app=self.app, schedule=self.name, tick=tick, worker=worker))

    def skip(self, tick: datetime, worker: str) -> None:
        """Record that ``tick`` does not run because the open run overlaps it."""
        self._check_new(tick)
        if self.running is None:
            raise NoRunInProgress()
        self._trigger(
            ev.ScheduleSkipped(
                tick=tick, reason="overlap", running_tick=self.running.tick, worker=worker
            )
        )

    def interrupt(self, reason: str) -> None:
        """Close the open run whose worker is gone."""
        if self.running is None:
            raise NoRunInProgress()
        run = self.running
        self._trigger(
            ev.ScheduleInterrupted(
                tick=run.tick, worker=run.worker, reason=values.error_text(reason)
            )
        )

    def complete(
        self,
        outcome: str,
        duration_ms: float,
        error_type: str | None = None,
        error_message: str | None = None,
    ) -> None:
        if self.running is None:
            raise NoRunInProgress()
        if outcome not in OUTCOMES:
            raise ScheduleError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        self._trigger(
            ev.ScheduleCompleted(
                tick=self.running.tick,
                outcome=outcome,
                duration_ms=duration_ms,
                error_type=None if error_type is None else values.error_text(error_type, 256),
                error_message=None if error_message is None else values.error_text(error_message),
            )
        )

    def collect(self) -> tuple[int, list[ev.EventPayload]]:
        """The version the pending events follow, and the events; forgets them."""
        pending, self._pending = self._pending, []
        return self.version - len(pending), pending

    # -- folding ------------------------------------------------------------------------

    def _check_new(self, tick: datetime) -> None:
        if self.last_tick is not None and tick <= self.last_tick:
            raise TickTaken(tick, self.last_tick)

    def _trigger(self, payload: ev.EventPayload) -> None:
        self._apply(payload)
        self._pending.append(payload)

    def _apply(self, payload: ev.EventPayload) -> None:
        if isinstance(payload, ev.ScheduleFired):
            self.last_tick = payload.tick
            self.running = Run(payload.tick, payload.worker)
        elif isinstance(payload, ev.ScheduleSkipped):
            self.last_tick = payload.tick
        elif isinstance(payload, ev.ScheduleCompleted | ev.ScheduleInterrupted):
            self.running = None
        self.version += 1
