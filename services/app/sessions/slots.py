"""The slots a host runs turns in: a session loaded from the log (taking up a turn its
process stopped in) or started anew (its enter hooks run), with the app's Session on it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
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
from turnlog.services.app.sessions.outbound import BlockView, Delivery
from turnlog.services.app.sessions.prompts import Prompts
from turnlog.services.app.sessions.repository import SessionNotFound, SessionRepository
from turnlog.services.app.sessions.resume import ATTEMPTS, CutOff, Resumption, cut_off
from turnlog.services.app.sessions.turn import (
    Inbound,
    Slot,
    TurnResult,
    call_hook,
    recorded_inbound,
    run_turn,
)
from turnlog.services.app.spec import AppSpec

log = structlog.get_logger("turnlog.runtime")
_copy = msgspec.json.Decoder()
_encode = msgspec.json.Encoder().encode
_CUT_OFF = "the process stopped before the turn completed"

GivenUp = Callable[[UUID, Inbound, str], Awaitable[None]]
"""Told of a turn given up after its attempts were all cut off: its session, its message
as the runtime had it, and why (the ingress dead-letters the message)."""


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
        given_up: GivenUp | None = None,
        attempts: int = ATTEMPTS,
    ) -> None:
        self.app = app
        self.attempts = attempts
        self.given_up = given_up
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
        """The session's slot from the log, with the turn the log has open (its process
        stopped in it) as ``cut_off``: ``take_up`` resumes or ends it."""
        agg = await self.repo.load(session_id)
        if agg.app != self.app.name:
            raise SessionOfAnotherApp(session_id, agg.app, self.app.name)
        slot = await self._slot(agg)
        if agg.open_turn is not None:
            slot.cut_off = cut_off(await self.repo.open_turn(agg))
        return slot

    async def take_up(self, slot: Slot) -> TurnResult | None:
        """Resume the slot's cut-off turn: its handler runs again for its message, handed
        what the earlier attempts put on record (the result, None when there was none).
        Without ``resume_turns``, or after ``attempts``, it is recorded interrupted."""
        turn, slot.cut_off = slot.cut_off, None
        if turn is None:
            return None
        live, agg = slot.live, slot.live.aggregate
        message_id = turn.message.message_id
        log.warning("turn was cut off", session_id=live.id, correlation_id=message_id)
        live.meta = Metadata(correlation_id=message_id, causation_id=message_id, actor="turnlog")
        if agg.open_prompt is not None:
            self._interrupt_prompt(slot)
        if not self.app.resume_turns or turn.attempts >= self.attempts:
            await self._end(slot, turn)
            return None
        return await self._resume(slot, turn)

    def _interrupt_prompt(self, slot: Slot) -> None:
        """End the prompt the cut-off attempt left waiting, its block marked so."""
        live, agg = slot.live, slot.live.aggregate
        block_id = f"prompt:{agg.open_prompt}"
        agg.interrupt_prompt("the process stopped while the prompt waited", at=live.clock())
        shown = agg.blocks.get(block_id)
        if shown is not None:
            payload = {**shown["payload"], "status": "interrupted"}
            live.record(
                lambda at: agg.show_block(block_id, shown["type"], payload, at=at),
                BlockView(block_id, shown["type"], payload),
            )

    async def _resume(self, slot: Slot, turn: CutOff) -> TurnResult:
        live, agg = slot.live, slot.live.aggregate
        attempt = turn.attempts + 1
        agg.resume_turn(attempt, _CUT_OFF, at=self.runtime.clock())
        await live.settle()  # counted before it runs: a turn that kills its process ends
        handler = self.app.message_handler
        assert handler is not None
        live.resuming = Resumption.of(turn)
        try:
            inbound = recorded_inbound(turn.message, agg).with_files(self.runtime.files)
            result = await run_turn(self.app.name, handler, slot, inbound, resumed=True)
        finally:
            live.resuming = None
        log.info(
            "cut-off turn resumed",
            session_id=live.id,
            correlation_id=result.message_id,
            attempt=attempt,
            outcome=result.outcome,
        )
        return replace(result, attempt=attempt)

    async def _end(self, slot: Slot, turn: CutOff) -> None:
        """Record the cut-off turn interrupted; given up (and told) if it had its attempts."""
        live, agg = slot.live, slot.live.aggregate
        gave_up = self.app.resume_turns
        reason = _CUT_OFF
        if gave_up:
            reason = f"given up after {turn.attempts} attempts, each cut off before it completed"
        agg.interrupt_turn(reason, at=self.runtime.clock())
        await live.settle()
        if gave_up:
            log.error("cut-off turn given up", session_id=live.id, attempts=turn.attempts)
            if self.given_up is not None:
                await self.given_up(agg.id, recorded_inbound(turn.message, agg), reason)

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
