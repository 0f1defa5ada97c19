"""Supervision of a serving process's background parts (ingress, router, relay,
projector, scheduler, task worker, API): a part that fails, or ends while the process
serves, is started again after a backoff (0.5 s doubling to 30 s, back to 0.5 s once it
has run a minute), so no part's failure ends the process. Each part's state is kept for
``/healthz`` and, through ``turnlog_processes``, for ``turnlog infra status``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import msgspec
import nats.errors
import nats.js.errors
import structlog

from turnlog.domain.values import clean
from turnlog.services.app.cancelling import cancel_requested
from turnlog.services.app.log.errors import transient

log = structlog.get_logger("turnlog.supervision")

Start = Callable[[], Awaitable[None]]

_PASSING_NATS = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionDrainingError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.NoServersError,
    nats.errors.NoRespondersError,
    nats.errors.StaleConnectionError,
    nats.errors.TimeoutError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.ServiceUnavailableError,
)


def passing(error: BaseException) -> bool:
    """Whether ``error`` says a server (PostgreSQL or NATS) is away for now: logged as
    one line, without a traceback, and waited out."""
    return transient(error) or isinstance(error, _PASSING_NATS)


class PartState(msgspec.Struct, kw_only=True):
    """How one part is doing: ``state`` is ``running``, ``restarting`` (it failed and
    waits out its backoff) or ``stopped``; ``restarts`` since the process started."""

    name: str
    state: str = "running"
    restarts: int = 0
    last_error: str | None = None
    since: datetime = msgspec.field(default_factory=lambda: datetime.now(UTC))


def describe(error: BaseException) -> str:
    return clean(f"{type(error).__name__}: {str(error).strip() or '(no message)'}")[:500]


class Supervisor:
    """Runs parts and restarts them; ``parts`` holds their states."""

    def __init__(
        self, *, min_delay: float = 0.5, max_delay: float = 30.0, healthy_after: float = 60.0
    ) -> None:
        self.min_delay, self.max_delay, self.healthy_after = min_delay, max_delay, healthy_after
        self.parts: dict[str, PartState] = {}

    def add(self, name: str, start: Start) -> asyncio.Task[None]:
        """Run ``start()`` as part ``name`` until cancelled, starting it again whenever it
        fails or returns."""
        self.parts[name] = PartState(name=name)
        return asyncio.create_task(self._supervise(name, start), name=f"part {name}")

    @property
    def healthy(self) -> bool:
        return all(p.state == "running" for p in self.parts.values())

    def snapshot(self) -> list[PartState]:
        return [msgspec.structs.replace(p) for p in self.parts.values()]

    async def _supervise(self, name: str, start: Start) -> None:
        state = self.parts[name]
        delay = self.min_delay
        while True:
            began = time.monotonic()
            self._set(state, "running")
            try:
                await start()
                error: BaseException = RuntimeError("it ended by itself")
            except asyncio.CancelledError:
                self._set(state, "stopped")
                raise
            except Exception as e:
                error = e
            if cancel_requested():  # lost on its way (see cancelling.py): stop all the same
                self._set(state, "stopped")
                raise asyncio.CancelledError
            if time.monotonic() - began > self.healthy_after:
                delay = self.min_delay
            state.restarts += 1
            state.last_error = describe(error)
            self._set(state, "restarting")
            self._report(name, error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_delay)

    @staticmethod
    def _set(state: PartState, value: str) -> None:
        if state.state != value:
            state.state, state.since = value, datetime.now(UTC)

    @staticmethod
    def _report(name: str, error: BaseException, delay: float) -> None:
        if passing(error):
            log.warning(
                "part stopped (a server away, an address taken); restarting it",
                part=name,
                error=describe(error),
                retry_in=delay,
            )
        else:
            log.error(
                "part failed; restarting it",
                part=name,
                error=describe(error),
                retry_in=delay,
                exc_info=(type(error), error, error.__traceback__),
            )
