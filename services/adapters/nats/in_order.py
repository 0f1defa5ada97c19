"""A session's inbound messages handled one at a time, in the order they arrived, even
when one fails for a while (the database restarting).

Let go with a negative acknowledgement, a message that failed comes back a second later,
and a later message of its session, handled meanwhile, would overtake it. Here it is
tried again where it is, its session's later messages waiting behind it, for up to
``patience`` seconds. Only then is it let go; the later ones waiting behind it are let
go too, so they come back after it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

log = structlog.get_logger("turnlog.ingress")

T = TypeVar("T")
FIRST_DELAY, MAX_DELAY = 0.2, 2.0  # seconds between tries, doubling


class HandleLater(Exception):
    """A message to let go (to come back later), after an earlier one of its session."""


@dataclass
class _Gate:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
    failed: bool = False  # an earlier message gave up: the ones behind it go too


class InOrder:
    """``run(key, attempt)`` tries ``attempt`` after every earlier ``run`` of ``key``
    (FIFO), again while it fails, for up to ``patience`` seconds; ``key`` None runs at
    once, once. ``permanent`` errors are not tried again."""

    def __init__(self, patience: float, permanent: tuple[type[Exception], ...] = ()) -> None:
        self.patience, self.permanent = patience, permanent
        self._gates: dict[str, _Gate] = {}

    async def run(self, key: str | None, attempt: Callable[[], Awaitable[T]]) -> T:
        if key is None:
            return await attempt()
        gate = self._gates.setdefault(key, _Gate())
        gate.users += 1
        try:
            async with gate.lock:  # waiters are woken in the order they came
                if gate.failed:
                    raise HandleLater(f"an earlier message of session {key} is to be retried")
                try:
                    return await self._patiently(attempt)
                except Exception as e:
                    if not isinstance(e, self.permanent):
                        gate.failed = True
                    raise
        finally:
            gate.users -= 1
            if not gate.users:
                del self._gates[key]

    async def _patiently(self, attempt: Callable[[], Awaitable[T]]) -> T:
        give_up_at = time.monotonic() + self.patience
        delay = FIRST_DELAY
        while True:
            try:
                return await attempt()
            except self.permanent:
                raise
            except Exception as e:
                if time.monotonic() + delay > give_up_at:
                    raise
                log.warning(
                    "handling an inbound message failed; trying again",
                    error=str(e) or type(e).__name__,
                    retry_in=delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
