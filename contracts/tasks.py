"""What travels between turnlog's own processes about background tasks: the work-queue
message that asks a runtime worker to run a task, and the notice that cancels one.

Only task ids travel: what a task is (its arguments, its attempts) is on its stream in
the log, so a message can be redelivered or duplicated without harm.
"""

from __future__ import annotations

import msgspec


class TaskQueued(msgspec.Struct, frozen=True, kw_only=True):
    """A task to run, on ``turnlog.tasks.run.<app>.<name>`` (stream ``TURNLOG_TASKS``, a
    work queue: each message goes to one worker; ``Nats-Msg-Id`` is the task id)."""

    task_id: str


class TaskCancelNotice(msgspec.Struct, frozen=True, kw_only=True):
    """A task was cancelled on record: the worker running it stops it. Core NATS, on
    ``turnlog.tasks.cancel.<app>.<task_id>``."""

    task_id: str
    reason: str = ""
