"""``App``: where an app registers its message handler and lifecycle hooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class AppError(Exception):
    """Raised when an app is declared wrongly (two message handlers, a bad name, ...)."""


class App:
    """A conversational app: ``@app.message()`` handles each user message; ``boot``,
    ``enter``, ``exit`` and ``shutdown`` hooks run around it."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name or any(c in name for c in " .*>"):
            raise AppError(f"app name must be a non-empty word without spaces or dots: {name!r}")
        self.name = name
        self.message_handler: Callable[..., Any] | None = None
        self.boot_hooks: list[Callable[..., Any]] = []
        self.enter_hooks: list[Callable[..., Any]] = []
        self.exit_hooks: list[Callable[..., Any]] = []
        self.shutdown_hooks: list[Callable[..., Any]] = []

    def message(self) -> Callable[[F], F]:
        """Register the handler called as ``handler(session, msg)`` for every message."""

        def register(fn: F) -> F:
            if self.message_handler is not None:
                raise AppError(
                    f"app {self.name!r} already has a message handler "
                    f"({self.message_handler.__qualname__})"
                )
            self.message_handler = fn
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

    @staticmethod
    def _hook(hooks: list[Callable[..., Any]]) -> Callable[[F], F]:
        def register(fn: F) -> F:
            hooks.append(fn)
            return fn

        return register

    def __repr__(self) -> str:
        return f"App({self.name!r})"
