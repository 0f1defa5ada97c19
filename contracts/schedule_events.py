"""Payloads of a schedule's events: each tick fired, completed, skipped or interrupted."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from turnlog.contracts.event_payload import EventPayload


class ScheduleFired(EventPayload, frozen=True, kw_only=True):
    """Recorded when a worker claims a tick of a schedule and starts its handler. Every
    worker serving the app tries; the stream's version check lets exactly one record it."""

    TYPE: ClassVar[str] = "schedule.fired"
    app: str
    schedule: str
    tick: datetime
    worker: str


class ScheduleCompleted(EventPayload, frozen=True, kw_only=True):
    """Recorded when a scheduled run ends: outcome ``ok``, ``failed`` (the handler raised)
    or ``cancelled`` (its worker was stopping and the run outlasted the grace period)."""

    TYPE: ClassVar[str] = "schedule.completed"
    tick: datetime
    outcome: str
    duration_ms: float
    error_type: str | None = None
    error_message: str | None = None


class ScheduleSkipped(EventPayload, frozen=True, kw_only=True):
    """Recorded when a tick comes while the run of an earlier tick is still going
    (reason ``overlap``): that tick does not run. Recorded once, by the worker that
    claims the tick."""

    TYPE: ClassVar[str] = "schedule.skipped"
    tick: datetime
    reason: str
    running_tick: datetime
    worker: str


class ScheduleInterrupted(EventPayload, frozen=True, kw_only=True):
    """Recorded when a run never completed because its worker is gone (the process died):
    by the worker that claims the next tick, just before it fires."""

    TYPE: ClassVar[str] = "schedule.interrupted"
    tick: datetime
    worker: str
    reason: str


SCHEDULE_PAYLOADS: tuple[type[EventPayload], ...] = (
    ScheduleFired,
    ScheduleCompleted,
    ScheduleSkipped,
    ScheduleInterrupted,
)
