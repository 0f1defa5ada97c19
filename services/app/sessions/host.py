"""Runs an App's handlers on the event log: one turn at a time per session, sessions
concurrently, live sessions cached with a bound, lifecycle hooks at the right moments.
Sessions are loaded or started in ``slots``; what the host raises is in ``errors``."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from types import MappingProxyType
from typing import Any
from uuid import UUID

import msgspec
import structlog

from turnlog.services.app import context
from turnlog.services.app.context import Runtime
from turnlog.services.app.log.errors import DuplicateMessage
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.ports import Metrics, NoMetrics
from turnlog.services.app.sessions.errors import (
    SessionEnded,
    SessionOfAnotherApp,
    TurnOpenElsewhere,
)
from turnlog.services.app.sessions.live import Credentials, LiveSession
from turnlog.services.app.sessions.outbound import Delivery, NoDelivery
from turnlog.services.app.sessions.prompts import Prompts
from turnlog.services.app.sessions.repository import SessionNotFound, SessionRepository
from turnlog.services.app.sessions.resume import ATTEMPTS
from turnlog.services.app.sessions.slots import GivenUp, Slots, run_hooks
from turnlog.services.app.sessions.turn import Inbound, Slot, TurnResult, call_hook, run_turn
from turnlog.services.app.spec import AppError, AppSpec

# SessionEnded, SessionOfAnotherApp and TurnOpenElsewhere are defined in errors;
# importable from here too.
__all__ = ["SessionEnded", "SessionHost", "SessionOfAnotherApp", "TurnOpenElsewhere"]

log = structlog.get_logger("turnlog.runtime")
_copy = msgspec.json.Decoder()
_encode = msgspec.json.Encoder().encode


class _Entry:
    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.slot: Slot | None = None


class SessionHost:
    """The runtime for one App: ``handle(inbound)`` runs a turn and returns its result."""

    def __init__(
        self,
        app: AppSpec,
        repo: SessionRepository,
        delivery: Delivery | None = None,
        *,
        runtime: Runtime | None = None,
        max_live: int = 10_000,
        idle_timeout: float | None = None,
        credentials: Credentials | None = None,
        metrics: Metrics | None = None,
        turn_attempts: int = ATTEMPTS,
    ) -> None:
        """``credentials`` gives a user's connected integrations (none without it);
        ``runtime`` what the app's code reaches through turnlog (its collections, tasks
        and files); ``turn_attempts``: how many attempts a turn cut off by crashes is
        given before it is given up."""
        if app.message_handler is None:
            raise AppError(f"app {app.name!r} has no @app.message() handler")
        self.app = app
        self.repo = repo
        self.runtime = runtime or Runtime(app.name)
        self.delivery = delivery or NoDelivery()
        self.max_live = max_live
        self.idle_timeout = idle_timeout
        self.credentials = credentials
        self.metrics = metrics or NoMetrics()
        self.prompts = Prompts()  # prompts waiting for the user in this process
        self._slots = Slots(
            app,
            repo,
            self.delivery,
            self.runtime,
            self.prompts,
            credentials,
            attempts=turn_attempts,
        )
        self._entries: OrderedDict[UUID, _Entry] = OrderedDict()
        self._booted = False
        self._reaper: asyncio.Task[None] | None = None

    def on_given_up(self, told: GivenUp) -> None:
        """Tell ``told`` of every turn given up after its attempts were cut off."""
        self._slots.given_up = told

    # -- process lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Run the boot hooks (once), and start closing idle sessions if configured."""
        if not self._booted:
            with self.serving():
                for hook in self.app.boot_hooks:
                    await call_hook(hook)
            self._booted = True
        if self.idle_timeout and self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_idle())

    async def stop(self) -> None:
        """Wait for running turns, then run the shutdown hooks. Sessions stay open."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        self.prompts.stop_all()  # turns waiting on the user end now
        for entry in list(self._entries.values()):
            async with entry.lock:
                pass
        with self.serving():
            for hook in self.app.shutdown_hooks:
                await call_hook(hook)

    # -- turns --------------------------------------------------------------------------

    async def handle(self, inbound: Inbound) -> TurnResult:
        """Run the turn for ``inbound``, after every earlier message of its session."""
        await self.start()
        session_id = inbound.session_id or uuid.uuid4()
        entry = self._entry(session_id)
        async with entry.lock:
            try:
                with (
                    structlog.contextvars.bound_contextvars(
                        session_id=str(session_id), correlation_id=inbound.message_id
                    ),
                    self.serving(),
                ):
                    if entry.slot is None:
                        entry.slot = await self._load(session_id, inbound)
                        resumed = entry.slot.resumed
                        if resumed is not None and resumed.message_id == inbound.message_id:
                            return resumed  # the turn of this very message, taken up
                    result = await self._run(entry.slot, inbound)
                    if result.outcome == "duplicate":
                        entry.slot = None  # holds the refused message; reload next time
                    return result
            except BaseException:
                entry.slot = None  # whatever is in memory may be ahead of the record
                raise
            finally:
                self._trim()

    async def _run(self, slot: Slot, inbound: Inbound) -> TurnResult:
        if slot.live.aggregate.ended:
            raise SessionEnded(slot.live.aggregate.id)
        handler = self.app.message_handler
        assert handler is not None
        try:
            result = await run_turn(
                self.app.name, handler, slot, inbound.with_files(self.runtime.files)
            )
        except DuplicateMessage:
            log.info("duplicate message skipped")
            return TurnResult(slot.live.aggregate.id, inbound.message_id, "duplicate", ())
        slot.live.last_active = time.monotonic()
        return result

    async def _load(self, session_id: UUID, inbound: Inbound | None = None) -> Slot:
        """The session's slot, loaded (or started by ``inbound``), its cut-off turn taken
        up first: resumed (``slot.resumed`` has the result) or recorded interrupted."""
        if inbound is None:
            slot = await self._slots.load(session_id)
        else:
            slot = await self._slots.open(session_id, inbound)
        if slot.cut_off is not None:
            with self.serving():
                slot.resumed = await self._slots.take_up(slot)
            if slot.resumed is not None:
                self.metrics.turn_resumed(self.app.name)
        return slot

    async def close(self, session_id: UUID, reason: str = "closed") -> bool:
        """Run the exit hooks and end the session. False if it had already ended."""
        entry = self._entry(session_id)
        async with entry.lock:
            slot = entry.slot or await self._load(session_id)
            entry.slot = None
            self._entries.pop(session_id, None)
            agg = slot.live.aggregate
            if agg.ended:
                return False
            slot.live.meta = Metadata(
                actor=f"app:{self.app.name}", correlation_id=f"close:{reason}"
            )
            await run_hooks(self.app.exit_hooks, slot, self.runtime)
            agg.end(reason, at=self.runtime.clock())
            await slot.live.settle()
            log.info("session ended", session_id=str(session_id), reason=reason)
            return True

    async def set_vars(
        self, session_id: UUID, variables: dict[str, Any], *, actor: str, message_id: str
    ) -> list[str]:
        """Set ``session.data`` keys from outside a turn; returns the keys that changed."""
        entry = self._entry(session_id)
        async with entry.lock:
            slot = entry.slot or await self._load(session_id)
            entry.slot = slot
            agg = slot.live.aggregate
            if agg.ended:
                raise SessionEnded(session_id)
            slot.live.meta = Metadata(
                correlation_id=message_id, causation_id=message_id, actor=actor
            )
            changed = []
            try:
                for key, value in variables.items():
                    if slot.recorded.get(key) == _encoded_or_none(value):
                        continue
                    agg.set_data(key, value, at=self.runtime.clock())
                    slot.recorded[key] = _encode(agg.data[key])
                    slot.session.data[key] = _copy.decode(slot.recorded[key])
                    changed.append(key)
            finally:
                await slot.live.settle()
            return changed

    async def reject(
        self, session_id: UUID, message_id: str | None, reason: str, detail: str
    ) -> bool:
        """Record on the session that an input for it was rejected; False if there is no
        such (open) session."""
        entry = self._entry(session_id)
        async with entry.lock:
            try:
                slot = entry.slot or await self._load(session_id)
            except SessionNotFound:
                return False
            entry.slot = slot
            if slot.live.aggregate.ended:
                return False
            slot.live.meta = Metadata(correlation_id=message_id, actor="turnlog")
            slot.live.aggregate.reject_input(message_id, reason, detail, at=self.runtime.clock())
            await slot.live.settle()
            return True

    def live_count(self) -> int:
        return sum(1 for e in self._entries.values() if e.slot is not None)

    def forget_idle(self, which: Callable[[UUID], bool]) -> int:
        """Drop the cached sessions ``which`` holds for that no turn holds now (another
        process may run their turns meanwhile: their next one loads them afresh); how
        many were dropped."""
        idle = [s for s, e in self._entries.items() if which(s) and not e.lock.locked()]
        for session_id in idle:
            del self._entries[session_id]
        return len(idle)

    # -- effects from outside a turn (background tasks) ---------------------------------

    @contextlib.asynccontextmanager
    async def outside_turn(self, session_id: UUID, meta: Metadata) -> AsyncIterator[LiveSession]:
        """The session between two of its turns (its lock held), for effects from outside
        any turn: what is applied to it is recorded with ``meta`` and delivered on exit.
        Raises SessionEnded, SessionNotFound, SessionOfAnotherApp, TurnOpenElsewhere,
        and ConcurrencyConflict when another process recorded on it meanwhile."""
        entry = self._entry(session_id)
        async with entry.lock:
            try:
                if entry.slot is not None:
                    live = entry.slot.live
                else:  # not kept here: used once, and loaded afresh by its next turn
                    agg = await self.repo.load(session_id)
                    if agg.app != self.app.name:
                        raise SessionOfAnotherApp(session_id, agg.app, self.app.name)
                    if agg.open_turn is not None:
                        raise TurnOpenElsewhere(session_id, agg.open_turn)
                    live = LiveSession(agg, self.repo, self.delivery)
                if live.aggregate.ended:
                    raise SessionEnded(session_id)
                live.meta = meta
                yield live
                await live.settle()
            except BaseException:
                entry.slot = None  # whatever is in memory may be ahead of the record
                raise
            finally:
                self._trim()

    # -- integrations and the app's code ------------------------------------------------

    async def integration_changed(self, user_id: str, type: str, connected: bool) -> None:
        """A user's integrations changed (here or in another process): live sessions of
        that user see them as they are now, and prompts waiting for that one to connect
        go on."""
        if connected:  # first: a refresh that fails must not leave a prompt waiting
            self.prompts.integration_connected(user_id, type)
        await self.refresh_integrations(user_id)

    async def refresh_integrations(self, user_id: str) -> int:
        """Give live sessions of ``user_id`` their integrations as they are now (after a
        connect or disconnect); how many sessions were refreshed."""
        slots = [
            e.slot
            for e in self._entries.values()
            if e.slot is not None and e.slot.live.aggregate.user.id == user_id
        ]
        if not slots:
            return 0
        now = MappingProxyType(dict(await slots[0].live.credentials(user_id)))
        for slot in slots:
            slot.session.integrations = now
        return len(slots)

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """While the app's own code runs: what it reaches through turnlog is this host's."""
        token = context.runtime.set(self.runtime)
        try:
            yield
        finally:
            context.runtime.reset(token)

    # -- the cache ----------------------------------------------------------------------

    def _entry(self, session_id: UUID) -> _Entry:
        entry = self._entries.get(session_id)
        if entry is None:
            entry = self._entries[session_id] = _Entry()
        self._entries.move_to_end(session_id)
        return entry

    def _trim(self) -> None:
        """Forget the least recently used idle sessions beyond ``max_live``."""
        excess = len(self._entries) - self.max_live
        if excess <= 0:
            return
        for session_id in list(self._entries):
            if excess <= 0:
                break
            if not self._entries[session_id].lock.locked():
                del self._entries[session_id]
                excess -= 1

    async def _reap_idle(self) -> None:
        assert self.idle_timeout
        interval = max(0.05, min(self.idle_timeout / 2, 30.0))
        while True:
            await asyncio.sleep(interval)
            cutoff = time.monotonic() - self.idle_timeout
            idle = [
                sid
                for sid, e in self._entries.items()
                if e.slot is not None and not e.lock.locked() and e.slot.live.last_active < cutoff
            ]
            for session_id in idle:
                try:
                    await self.close(session_id, reason="idle_timeout")
                except Exception as e:
                    log.error(
                        "closing idle session failed", session_id=str(session_id), error=str(e)
                    )


def _encoded_or_none(value: Any) -> bytes | None:
    try:
        return _encode(value)
    except (TypeError, ValueError):
        return None
