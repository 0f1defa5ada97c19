"""Read model of background tasks: one row per task with its status and attempts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from turnlog.contracts import events as ev
from turnlog.projections.base import Copy, Event, Exec, Write

# columns a later event of the task changes, in the UPDATE's parameter order
_CHANGED = (
    "status", "attempts", "progress", "error_type", "error_message", "started_at",
    "finished_at", "updated_at", "version",
)  # fmt: skip


class Tasks:
    """One row per task: what it is, where it was submitted, its status (``submitted``,
    ``running``, ``retrying``, ``completed``, ``failed``, ``cancelled``), its attempts,
    the last error, and when it was submitted, first started, finished and last changed.
    Arguments and results stay on the task's stream (sealed), not here."""

    name: ClassVar[str] = "tasks"
    tables: ClassVar[tuple[str, ...]] = ("turnlog_tasks",)
    ddl: ClassVar[tuple[str, ...]] = (
        """CREATE TABLE {s}.turnlog_tasks (
            task_id       text        PRIMARY KEY,
            app           text        NOT NULL,
            name          text        NOT NULL,
            session_id    text,
            user_id       text,
            status        text        NOT NULL,
            attempts      integer     NOT NULL,
            retries       integer     NOT NULL,
            timeout       double precision NOT NULL,
            progress      double precision,
            error_type    text,
            error_message text,
            submitted_at  timestamptz NOT NULL,
            started_at    timestamptz,
            finished_at   timestamptz,
            updated_at    timestamptz NOT NULL,
            version       integer     NOT NULL
        )""",
        "CREATE INDEX turnlog_tasks_session ON {s}.turnlog_tasks (session_id, submitted_at)",
        "CREATE INDEX turnlog_tasks_app ON {s}.turnlog_tasks (app, status, submitted_at)",
    )
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "task_id", "app", "name", "session_id", "user_id", "status", "attempts", "retries",
        "timeout", "progress", "error_type", "error_message", "submitted_at", "started_at",
        "finished_at", "updated_at", "version",
    )  # fmt: skip

    def apply(self, events: Sequence[Event]) -> list[Write]:
        new: dict[str, dict[str, Any]] = {}
        changed: dict[str, dict[str, Any]] = {}
        for e in events:
            p = e.payload
            if not e.type.startswith("task.") or p is None:
                continue
            task_id = e.stream_id.removeprefix("task:")
            if isinstance(p, ev.TaskSubmitted):
                new[task_id] = {
                    "task_id": task_id, "app": p.app, "name": p.name,
                    "session_id": p.session_id, "user_id": p.user.id if p.user else None,
                    "status": "submitted", "attempts": 0, "retries": p.retries,
                    "timeout": p.timeout, "progress": None, "error_type": None,
                    "error_message": None, "submitted_at": e.recorded_at, "started_at": None,
                    "finished_at": None, "updated_at": e.recorded_at, "version": e.version,
                }  # fmt: skip
                continue
            row = new.get(task_id) or changed.setdefault(task_id, {})
            _fold(row, e, p)
        writes: list[Write] = []
        if new:
            rows = [tuple(r[c] for c in self.COLUMNS) for r in new.values()]
            writes.append(Copy("turnlog_tasks", self.COLUMNS, rows))
        if changed:
            writes.append(_update(changed))
        return writes


def _fold(row: dict[str, Any], e: Event, p: ev.EventPayload) -> None:
    """Bring ``row`` (a whole new row, or the columns changed so far) past ``e``."""
    if isinstance(p, ev.TaskStarted):
        row.update(status="running", attempts=p.attempt, progress=None)
        if row.get("started_at") is None:
            row["started_at"] = e.recorded_at
    elif isinstance(p, ev.TaskProgressed):
        row["progress"] = p.progress
    elif isinstance(p, ev.TaskCompleted):
        row.update(status="completed", finished_at=e.recorded_at)
    elif isinstance(p, ev.TaskFailed):
        row.update(
            status="retrying" if p.will_retry else "failed",
            attempts=p.attempt,
            error_type=p.error_type,
            error_message=p.error_message,
        )
        if not p.will_retry:
            row["finished_at"] = e.recorded_at
    elif isinstance(p, ev.TaskCancelled):
        row.update(status="cancelled", finished_at=e.recorded_at)
    row.update(updated_at=e.recorded_at, version=e.version)


def _update(changed: dict[str, dict[str, Any]]) -> Exec:
    """One UPDATE for rows made earlier: a column is set when this batch changed it
    (``$n`` true), kept otherwise; ``started_at`` keeps the first start."""
    sets = []
    for i, column in enumerate(_CHANGED):
        flag, value = 2 + 2 * i, 3 + 2 * i
        if column == "started_at":
            sets.append(
                f"started_at = CASE WHEN ${flag} AND started_at IS NULL THEN ${value}"
                " ELSE started_at END"
            )
        else:
            sets.append(f"{column} = CASE WHEN ${flag} THEN ${value} ELSE {column} END")
    rows = []
    for task_id, row in changed.items():
        params: list[Any] = [task_id]
        for column in _CHANGED:
            params += [column in row, row.get(column)]
        rows.append(tuple(params))
    sql = f"UPDATE {{s}}.turnlog_tasks SET {', '.join(sets)} WHERE task_id = $1"
    return Exec(sql, rows)
