"""Prompts a handler blocks on: the block shown, the answer awaited, each step recorded."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

from turnlog.services.app.sessions.prompts import Answer
from turnlog.services.sdk.types import Block

if TYPE_CHECKING:
    from turnlog.services.sdk.session import Session


class Prompting:
    """``prompt_file`` and ``prompt_integration``: a blocking block, then a wait for the
    answer, each step recorded (prompted, then received / declined / timed out)."""

    def __init__(self, session: Session, kind: str) -> None:
        self.session, self.kind = session, kind
        replaying = session._live.replaying
        self.recorded: tuple[str, Any] | None = None
        if replaying is None:
            self.id = uuid.uuid4().hex
        elif kind == "file":  # a re-run: the recorded prompt, and how it was answered
            self.id, *outcome = replaying.prompt(kind)
            self.recorded = (outcome[0], outcome[1])
        else:  # whether it was connected already is not on record (credentials never are)
            raise replaying.refuse(f"prompt_{kind}")

    async def ask(
        self,
        block: Block,
        timeout: float | None,
        *,
        message: str = "",
        accept: str = "",
        integration: str | None = None,
    ) -> Any:
        live, agg = self.session._live, self.session._live.aggregate
        if self.recorded is not None:
            return await self._replay(block, timeout, message=message, accept=accept)
        waiting = live.prompts.open(
            self.id,
            session_id=live.id,
            kind=self.kind,
            user_id=agg.user.id,
            integration=integration,
            accept=accept,
        )
        try:
            live.apply(
                lambda at: agg.prompt(
                    self.id,
                    self.kind,
                    at=at,
                    message=message,
                    accept=accept,
                    integration=integration,
                    timeout=timeout,
                )
            )
            await self.session.show(block)
            await self.session.flush()  # the user sees the prompt once it is on record
            try:
                async with asyncio.timeout(timeout or None):  # wait_for may lose a cancel
                    answer = await waiting
                if answer.kind == "stopped":
                    reason = "the runtime stopped while the prompt waited"
                    live.apply(lambda at: agg.interrupt_prompt(reason, at=at))
                    await self.session.show(with_status(block, "interrupted"))
                return answer
            except TimeoutError:
                live.apply(lambda at: agg.time_out_prompt(self.id, at=at))
                await self.session.show(with_status(block, "timed_out"))
                return None
        finally:
            live.prompts.close(self.id)

    async def _replay(self, block: Block, timeout: float | None, **shown: Any) -> Any:
        """The prompt as recorded: shown, then answered as it was."""
        live, agg = self.session._live, self.session._live.aggregate
        assert self.recorded is not None and live.replaying is not None
        outcome, file = self.recorded
        live.apply(lambda at: agg.prompt(self.id, self.kind, at=at, timeout=timeout, **shown))
        await self.session.show(block)
        if outcome == "received":
            return Answer("file", file=file)
        if outcome != "timed_out":
            raise live.replaying.refuse("a prompt left without an answer")
        live.apply(lambda at: agg.time_out_prompt(self.id, at=at))
        await self.session.show(with_status(block, "timed_out"))
        return None


def with_status(block: Block, status: str, **more: Any) -> Block:
    """``block`` again, its payload's ``status`` (and ``more``) changed."""
    return Block(block.type, {**block.payload, "status": status, **more}, id=block.id)
