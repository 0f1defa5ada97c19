"""Schedules: ``@app.schedule("0 * * * *")`` runs a handler on a cron.

Cron expressions are parsed by ``croniter``: five fields (minute hour day-of-month month
day-of-week), a sixth for seconds (``"* * * * * */2"``: every two seconds), or a
nickname (``@hourly``, ``@daily``, ...). Ticks are computed in the schedule's time zone
(UTC unless given) and recorded in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from turnlog.domain.errors import TurnlogError
from turnlog.services.sdk.types import UserInfo

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_NICKNAMES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


class ScheduleDeclarationError(TurnlogError, ValueError):
    """Raised when a schedule is declared wrongly: a cron expression croniter cannot read
    or that never fires, an unknown time zone, a bad name or owner."""

    code = "schedule_declaration_error"


class Cron:
    """A validated cron expression in a time zone: the ticks it gives."""

    def __init__(self, expression: str, tz: str = "UTC") -> None:
        if not isinstance(expression, str) or not expression.strip():
            raise ScheduleDeclarationError(f"a cron expression is a non-empty str: {expression!r}")
        self.expression = " ".join(expression.split())
        fields = self.expression.split(" ")
        if self.expression.lower() not in _NICKNAMES and len(fields) not in (5, 6):
            raise ScheduleDeclarationError(
                f"cron expression {expression!r} has {len(fields)} fields: give 5 (minute hour"
                " day-of-month month day-of-week), 6 (the same, then seconds) or a nickname"
                f" ({', '.join(_NICKNAMES)})"
            )
        try:
            self.zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleDeclarationError(f"unknown time zone {tz!r}") from None
        try:
            self.next_after(datetime.now(UTC))
        except (CroniterError, ValueError, KeyError) as e:
            raise ScheduleDeclarationError(
                f"invalid cron expression {expression!r}: {e or 'it never fires'}"
            ) from None

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment``, in UTC."""
        ticks = croniter(self.expression, moment.astimezone(self.zone))
        return ticks.get_next(datetime).astimezone(UTC)

    def latest_at_or_before(self, moment: datetime) -> datetime:
        """The last tick at or before ``moment``, in UTC."""
        ticks = croniter(
            self.expression, (moment + timedelta(microseconds=1)).astimezone(self.zone)
        )
        return ticks.get_prev(datetime).astimezone(UTC)

    def __repr__(self) -> str:
        return f"Cron({self.expression!r}, tz={self.zone.key!r})"


class Schedule:
    """A handler of an app that runs on a cron, as its owner, with no one to reply to."""

    def __init__(
        self,
        app_name: str,
        name: str,
        cron: Cron,
        handler: Callable[..., Any],
        owner: str | UserInfo | None = None,
    ) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ScheduleDeclarationError(
                f"a schedule name is 1-128 letters, digits, '_' or '-': {name!r}"
            )
        self.app_name, self.name, self.cron, self.handler = app_name, name, cron, handler
        self.owner = _owner(owner, app_name)

    @property
    def stream_id(self) -> str:
        """The stream its ticks and runs are recorded on."""
        return f"schedule:{self.app_name}:{self.name}"

    def __repr__(self) -> str:
        return f"Schedule({self.stream_id!r}, {self.cron!r})"


def _owner(owner: str | UserInfo | None, app_name: str) -> UserInfo:
    """Who a scheduled run acts as: a UserInfo, ``"org:<id>"`` (the org itself), a user
    id, or by default the app's own system user ``app:<name>``."""
    if isinstance(owner, UserInfo):
        return owner
    if owner is None:
        return UserInfo(id=f"app:{app_name}")
    if not isinstance(owner, str) or not owner.strip():
        raise ScheduleDeclarationError(f"owner is a user id, 'org:<id>' or a UserInfo: {owner!r}")
    if owner.startswith("org:") and len(owner) > 4:
        return UserInfo(id=owner, org_id=owner.removeprefix("org:"))
    return UserInfo(id=owner)
