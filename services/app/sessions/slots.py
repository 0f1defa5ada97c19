"""The slots a host runs turns in: a session loaded from the log (ending a turn its
process stopped in) or started anew (its enter hooks run), with the app's Session on it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import msgspec
import structlog

from turnlog.contracts.events import ChannelRef, UserRef
from turnlog.domain.session import Session as SessionAggregate
from turnlog.services.app import context
from turnlog.services.app.context import Runtime
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.sessions.errors import SessionOfAnotherApp
from turnlog.services.app.sessions.live import Credentials, LiveSession
from turnlog.services.app.sessions.outbound import Delivery
from turnlog.services.app.sessions.prompts import Prompts
from turnlog.services.app.sessions.repository import SessionNotFound, SessionRepository
from turnlog.services.app.sessions.turn import Inbound, Slot, call_hook
from turnlog.services.app.spec import AppSpec

log = structlog.get_logger("turnlog.runtime")
_copy = msgspec.json.Decoder()
_encode = msgspec.json.Encoder().encode


class Slots:
    """Opens the sessions of one app for its host."""

    def __init__(
        self,
        app: AppSpec,
        repo: SessionRepository,
        delivery: Delivery,
        runtime: Runtime,
        prompts: Prompts,
        credentials: Credentials | None,
    ) -> None:
        self.app = app
        self.repo = repo
        self.delivery = delivery
        self.runtime = runtime
        self.prompts = prompts
        self.credentials = credentials

    async def open(self, session_id: UUID, inbound: Inbound) -> Slot:
        """The session's slot: loaded, or started by ``inbound`` if there is no such session."""
        try:
            return await self.load(session_id)
        except SessionNotFound:
            return await self.create(session_id, inbound)

    async def load(self, session_id: UUID) -> Slot:
        """The session's slot from the log; a turn the log has open was interrupted (its
        process stopped in it), and is recorded so."""
        agg = await self.repo.load(session_id)
        if agg.app != self.app.name:
            raise SessionOfAnotherApp(session_id, agg.app, self.app.name)
        slot = await self._slot(agg)
        if agg.open_turn is not None:
            log.warning(
                "turn was interrupted", session_id=str(session_id), correlation_id=agg.open_turn
            )
            slot.live.meta = Metadata(correlation_id=agg.open_turn, actor="turnlog")
            if agg.open_prompt is not None:
                agg.interrupt_prompt(
                    "the process stopped while the prompt waited", at=self.runtime.clock()
                )
            agg.interrupt_turn(
                "the process stopped before the turn completed", at=self.runtime.clock()
            )
            await slot.live.settle()
        return slot

    async def create(self, session_id: UUID, inbound: Inbound) -> Slot:
        """A new session for ``inbound``, started and its enter hooks run, in one commit."""
        user = inbound.user
        agg = SessionAggregate.start(
            session_id,
            app=self.app.name,
            at=self.runtime.clock(),
            user=UserRef(id=user.id, email=user.email, org_id=user.org_id),
            channel=ChannelRef(type=inbound.channel.type, name=inbound.channel.name),
        )
        slot = await self._slot(agg)
        slot.live.meta = Metadata(
            correlation_id=inbound.message_id,
            causation_id=inbound.message_id,
            actor=f"app:{self.app.name}",
        )
        await run_hooks(self.app.enter_hooks, slot, self.runtime)
        await slot.live.settle()  # started, and what the enter hooks did, in one commit
        return slot

    async def _slot(self, agg: SessionAggregate) -> Slot:
        live = LiveSession(
            agg,
            self.repo,
            self.delivery,
            prompts=self.prompts,
            credentials=self.credentials,
            clock=self.runtime.clock,
        )
        data = _copy.decode(_encode(agg.data))
        integrations = await live.credentials(agg.user.id)
        session = self.app.facades.session(live, data, integrations, self.runtime)
        return Slot(live, session)


async def run_hooks(hooks: list[Callable[..., Any]], slot: Slot, runtime: Runtime) -> None:
    """Run lifecycle hooks on the session in ``slot``, settling after each; one that fails
    is logged and the next runs."""
    token = context.caller.set(slot.session)
    previous = context.runtime.set(runtime)
    try:
        for hook in hooks:
            try:
                await call_hook(hook, slot.session)
                await slot.live.settle()
            except Exception as e:
                log.error(
                    "hook failed",
                    hook=hook.__qualname__,
                    session_id=slot.live.id,
                    error=str(e),
                    exc_info=(type(e), e, e.__traceback__),
                )
    finally:
        context.runtime.reset(previous)
        context.caller.reset(token)
