"""The task queue in memory: submitted tasks wait until someone runs them (a test, with
``AppTester.run_tasks``); a cancellation reaches the attempt running here."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Queued:
    app: str
    name: str
    task_id: str


class MemoryTaskQueue:
    def __init__(self) -> None:
        self.waiting: deque[Queued] = deque()
        self._running: dict[str, Callable[[str], None]] = {}

    async def enqueue(self, app: str, name: str, task_id: str) -> None:
        self.waiting.append(Queued(app, name, task_id))

    async def announce_cancel(self, app: str, task_id: str, reason: str) -> None:
        cancel = self._running.get(task_id)
        if cancel is not None:
            cancel(reason)

    def take(self, app: str) -> Queued | None:
        """The next task of ``app`` waiting (None: none)."""
        for queued in self.waiting:
            if queued.app == app:
                self.waiting.remove(queued)
                return queued
        return None

    def running(self, task_id: str, cancel: Callable[[str], None] | None) -> None:
        """``cancel`` stops the attempt of ``task_id`` running now (None: it ended)."""
        if cancel is None:
            self._running.pop(task_id, None)
        else:
            self._running[task_id] = cancel
