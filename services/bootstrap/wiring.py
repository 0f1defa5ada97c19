"""The composition root: one of everything a process uses, made once from its adapters
and handed to every part (the runtime of an app, its scheduler and task worker, the
query API, the CLI's commands, the tests). Nothing else builds a key ring, a document
store or an integrations service of its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from turnlog.services.adapters.memory.claims import MemoryClaims
from turnlog.services.adapters.memory.documents import MemoryDocuments
from turnlog.services.adapters.memory.files import MemoryFiles
from turnlog.services.adapters.memory.log import MemoryLog
from turnlog.services.adapters.memory.tasks import MemoryTaskQueue
from turnlog.services.adapters.postgres.claims import PostgresClaims
from turnlog.services.adapters.postgres.documents import CollectionStore
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.app.collections import Documents
from turnlog.services.app.context import Runtime
from turnlog.services.app.integrations import Integrations
from turnlog.services.app.ports import (
    Claims,
    Clock,
    EventLog,
    Files,
    Metrics,
    NoMetrics,
    NoNotices,
    Notices,
    TaskQueue,
    system_clock,
)
from turnlog.services.app.schedules.scheduler import Scheduler
from turnlog.services.app.sessions.host import SessionHost
from turnlog.services.app.sessions.outbound import Delivery
from turnlog.services.app.sessions.repository import SessionRepository
from turnlog.services.app.spec import AppSpec
from turnlog.services.app.tasks.log import TaskLog
from turnlog.services.app.tasks.service import TaskService
from turnlog.services.settings import Settings


@dataclass
class Wiring:
    """The ports a process runs on, and the services built on them (each once)."""

    log: EventLog
    documents: Documents
    claims: Claims
    settings: Settings = field(default_factory=lambda: Settings(home=Path(".turnlog")))
    files: Files | None = None
    queue: TaskQueue | None = None
    notices: Notices = field(default_factory=NoNotices)
    clock: Clock = system_clock
    metrics: Metrics = field(default_factory=NoMetrics)
    _runtimes: dict[str, Runtime] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def postgres(cls, store: EventStore, **given: Any) -> Wiring:
        """Everything on ``store``'s PostgreSQL; ``given`` sets the rest (files, queue,
        notices, settings)."""
        return cls(
            log=store, documents=CollectionStore(store), claims=PostgresClaims(store.pool), **given
        )

    @classmethod
    def memory(cls, clock: Clock = system_clock, **given: Any) -> Wiring:
        """Everything in this process's memory (tests; ``turnlog.testing``): the log,
        keys, documents, claims, files and task queue; ``given`` sets the rest."""
        log = MemoryLog()
        return cls(
            log=log,
            documents=MemoryDocuments(log, clock),
            claims=MemoryClaims(),
            files=given.pop("files", None) or MemoryFiles(),
            queue=given.pop("queue", None) or MemoryTaskQueue(),
            clock=clock,
            **given,
        )

    @cached_property
    def integrations(self) -> Integrations:
        return Integrations(self.log, notices=self.notices, clock=self.clock)

    @cached_property
    def tasks(self) -> TaskLog:
        return TaskLog(self.log)

    def runtime(self, app: AppSpec) -> Runtime:
        """What ``app``'s code reaches through turnlog here (one per app)."""
        made = self._runtimes.get(app.name)
        if made is None:
            queue = self.queue
            tasks = TaskService(app.name, self.tasks, queue, self.clock) if queue else None
            made = Runtime(
                app.name,
                documents=self.documents,
                tasks=tasks,
                files=self.files,
                clock=self.clock,
            )
            self._runtimes[app.name] = made
        return made

    def repository(self, snapshot_every: int | None = None) -> SessionRepository:
        every = self.settings.snapshot_every if snapshot_every is None else snapshot_every
        return SessionRepository(self.log, snapshot_every=every)

    def host(
        self,
        app: AppSpec,
        delivery: Delivery | None = None,
        *,
        snapshot_every: int | None = None,
        **options: Any,
    ) -> SessionHost:
        """The runtime of ``app``'s sessions (``options``: max_live, idle_timeout)."""
        return SessionHost(
            app,
            self.repository(snapshot_every),
            delivery,
            runtime=self.runtime(app),
            credentials=self.integrations.for_user,
            metrics=self.metrics,
            turn_attempts=self.settings.turn_attempts,
            **options,
        )

    def scheduler(self, app: AppSpec, **options: Any) -> Scheduler:
        """``app``'s schedules (``options``: worker, stop_grace)."""
        return Scheduler(
            app,
            self.log,
            self.claims,
            runtime=self.runtime(app),
            integrations=self.integrations,
            **options,
        )
