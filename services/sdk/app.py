"""``App``: where an app registers its message handler and lifecycle hooks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from turnlog.domain.errors import DomainError
from turnlog.services.app.spec import AppError
from turnlog.services.sdk.collections import Collection, CollectionError
from turnlog.services.sdk.facades import Facades
from turnlog.services.sdk.routes import RouteError, Routes
from turnlog.services.sdk.schedules import Cron, Schedule, ScheduleDeclarationError
from turnlog.services.sdk.tasks import TaskDeclarationError, TaskDef
from turnlog.services.sdk.types import UserInfo

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["App", "AppError"]


class App:
    """A conversational app: ``@app.message()`` handles each user message; ``boot``,
    ``enter``, ``exit`` and ``shutdown`` hooks run around it."""

    def __init__(self, name: str, *, resume_turns: bool = True) -> None:
        """``resume_turns``: a turn cut off by a crash, a kill or a lost lease is taken up
        again by the runtime that next owns its session (see docs/durable-turns.md);
        False records it interrupted instead, for handlers with side effects that must
        never run twice."""
        if not isinstance(name, str) or not name or any(c in name for c in " .*>"):
            raise AppError(f"app name must be a non-empty word without spaces or dots: {name!r}")
        self.name = name
        self.message_handler: Callable[..., Any] | None = None
        self.resume_turns = bool(resume_turns)
        self.boot_hooks: list[Callable[..., Any]] = []
        self.enter_hooks: list[Callable[..., Any]] = []
        self.exit_hooks: list[Callable[..., Any]] = []
        self.shutdown_hooks: list[Callable[..., Any]] = []
        self.collections: dict[str, Collection] = {}
        self.routes = Routes()
        self.schedules: dict[str, Schedule] = {}
        self.tasks: dict[str, TaskDef] = {}

    def collection(
        self, name: str, scope: str = "app", indexes: Sequence[str | Sequence[str]] = ()
    ) -> Collection:
        """Declare a collection of JSON documents scoped to the whole app (``"app"``), the
        user's owner (``"owner"``: their org, or them), the user or the session; each of
        ``indexes`` is a field path, or a list of them for a compound index."""
        if name in self.collections:
            existing = self.collections[name]
            if existing.scope != scope:
                raise AppError(
                    f"collection {name!r} is already declared with scope {existing.scope!r}"
                )
            return existing
        try:
            collection = Collection(self.name, name, scope, indexes)
        except (CollectionError, DomainError) as e:
            raise AppError(str(e)) from None
        self.collections[name] = collection
        return collection

    @property
    def facades(self) -> Facades:
        """How this app's code is handed its sessions (what the runtime calls)."""
        return Facades(self)

    def message(self, *, resume_turns: bool | None = None) -> Callable[[F], F]:
        """Register the handler called as ``handler(session, msg)`` for every message;
        ``resume_turns`` (True or False) overrides the app's for this handler."""

        def register(fn: F) -> F:
            if self.message_handler is not None:
                raise AppError(
                    f"app {self.name!r} already has a message handler "
                    f"({self.message_handler.__qualname__})"
                )
            self.message_handler = fn
            if resume_turns is not None:
                self.resume_turns = bool(resume_turns)
            return fn

        return register

    def boot(self) -> Callable[[F], F]:
        """Register a hook run once per process, before any message is handled."""
        return self._hook(self.boot_hooks)

    def enter(self) -> Callable[[F], F]:
        """Register a hook run once when a session is created, with that session."""
        return self._hook(self.enter_hooks)

    def exit(self) -> Callable[[F], F]:
        """Register a hook run when a session is closed or times out, with that session."""
        return self._hook(self.exit_hooks)

    def shutdown(self) -> Callable[[F], F]:
        """Register a hook run once when the process stops serving the app."""
        return self._hook(self.shutdown_hooks)

    def schedule(
        self,
        cron: str,
        *,
        name: str | None = None,
        owner: str | UserInfo | None = None,
        tz: str = "UTC",
    ) -> Callable[[F], F]:
        """Run the handler on ``cron`` (5 fields, or 6 with seconds last), once per tick
        across all workers, as ``owner`` (a user id, ``"org:<id>"`` or a UserInfo; by
        default the app's system user ``app:<name>``). ``name`` defaults to the
        function's name; ``tz`` is the time zone the expression is read in."""
        try:
            parsed = Cron(cron, tz)
        except ScheduleDeclarationError as e:
            raise AppError(str(e)) from None

        def register(fn: F) -> F:
            try:
                schedule = Schedule(self.name, name or fn.__name__, parsed, fn, owner)
            except ScheduleDeclarationError as e:
                raise AppError(str(e)) from None
            if schedule.name in self.schedules:
                raise AppError(f"app {self.name!r} already has a schedule {schedule.name!r}")
            self.schedules[schedule.name] = schedule
            return fn

        return register

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        retries: int = 0,
        timeout: float = 0,
    ) -> Any:
        """Declare a background task, ``async def fn(session, **kwargs)``, as ``@app.task``
        or ``@app.task(retries=2, timeout=60)``: ``await fn.submit(session=..., **kwargs)``
        runs it on a runtime worker, up to ``retries`` + 1 times, each attempt cut off after
        ``timeout`` seconds (0: never). Returns the ``TaskDef``."""

        def register(fn: Callable[..., Any]) -> TaskDef:
            try:
                task = TaskDef(self.name, fn, name=name, retries=retries, timeout=timeout)
            except TaskDeclarationError as e:
                raise AppError(str(e)) from None
            if task.name in self.tasks:
                raise AppError(f"app {self.name!r} already has a task {task.name!r}")
            self.tasks[task.name] = task
            return task

        return register(fn) if fn is not None else register

    def data(self, name: str, access: str = "public") -> Callable[[F], F]:
        """Serve the handler at ``GET /data/<name>``: ``access="public"`` for anyone,
        ``"authenticated"`` for authenticated callers only. Query parameters are its
        keyword arguments; a ``RequestContext`` parameter gets the caller."""
        return self._route(lambda fn: self.routes.add_data(name, access, fn))

    def endpoint(self, method: str, path: str, authorized: bool = True) -> Callable[[F], F]:
        """Serve the handler at ``method path`` (``{name}`` segments are path
        parameters); with ``authorized`` only authenticated callers may call it. Path,
        query and JSON body parameters are its keyword arguments."""
        return self._route(lambda fn: self.routes.add_endpoint(method, path, authorized, fn))

    @staticmethod
    def _route(add: Callable[[Callable[..., Any]], None]) -> Callable[[F], F]:
        def register(fn: F) -> F:
            try:
                add(fn)
            except RouteError as e:
                raise AppError(str(e)) from None
            return fn

        return register

    @staticmethod
    def _hook(hooks: list[Callable[..., Any]]) -> Callable[[F], F]:
        def register(fn: F) -> F:
            hooks.append(fn)
            return fn

        return register

    def __repr__(self) -> str:
        return f"App({self.name!r})"
