"""One partition's consumer, pulled while this process owns the partition.

A pull request waits at the server (up to EXPIRES) and is answered with each message as it
arrives, so a message is handled as soon as with a push consumer; the lane asks again as
each request ends. Only the owner pulls, so no subscription needs to be unbound when the
partition moves: the owner stops asking, drains its inbox (the server forgets a request
whose inbox has no subscriber), finishes what it was handed, and lets go.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Coroutine
from typing import Any

import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from turnlog.services.app.cancelling import checkpoint

log = structlog.get_logger("turnlog.ingress")

EXPIRES = 2.0  # seconds a pull request waits for messages
BATCH = 64  # messages one pull request may be answered with
_MARGIN = 1.0  # a request not answered by its expiry and this: lost (a reconnect)
_POLL = 0.25  # seconds between looks at the messages another runtime left unacked
_BACKOFF = 1.0  # after the server refused a request (not a plain expiry)

Handle = Callable[[Msg], Coroutine[Any, Any, None]]


class ConsumerGone(Exception):
    """Raised when the partition's consumer no longer exists (deleted with its stream)."""


class PullLane:
    """Pulls ``durable`` on ``stream`` until ``stop()``, handing each message to
    ``handle`` in a task of its own, in arrival order."""

    def __init__(
        self,
        nc: NATS,
        js: JetStreamContext,
        stream: str,
        durable: str,
        handle: Handle,
        *,
        ack_wait: float,
    ) -> None:
        self.nc, self.js, self.stream, self.durable = nc, js, stream, durable
        self.handle = handle
        self.ack_wait = ack_wait
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._stopping = asyncio.Event()
        self._ended = asyncio.Event()  # the current request has ended
        self._left = 0  # messages the current request may still bring
        self._status: tuple[str, str] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._owed = 0  # redeliveries of the last owner's messages still to come
        self._held: list[Msg] = []  # what came meanwhile, handed out in stream order
        self._hold_until = 0.0

    @property
    def in_flight(self) -> int:
        """Messages handed to ``handle`` whose handling has not ended."""
        return len(self._tasks)

    def stop(self) -> None:
        """Ask no more; ``run`` returns once what it was handed is handled (the request
        waiting at the server ends with the inbox's draining)."""
        self._stopping.set()
        self._ended.set()

    async def run(self) -> None:
        """Pull until stopped (or cancelled), then drain the inbox and wait for every
        message handed out."""
        if not await self._redeliverable():
            return
        sub = await self.nc.subscribe(self.nc.new_inbox(), cb=self._arrived)
        try:
            while not self._stopping.is_set():
                checkpoint()
                await self._request(sub.subject)
                if self._held and time.monotonic() > self._hold_until:
                    self._hand_out_held()  # not all came back: go on, in stream order
        finally:
            self._hand_out_held()
            with contextlib.suppress(Exception):
                await sub.drain()  # type: ignore[no-untyped-call]
            while self._tasks:  # not cancelled with this: turns in progress finish
                with contextlib.suppress(BaseException):
                    await asyncio.wait(set(self._tasks))
            with contextlib.suppress(Exception):
                await self.nc.flush()  # the acks, before the partition is let go

    async def _redeliverable(self) -> bool:
        """Wait until the messages the partition's last owner took and did not acknowledge
        (it died) can be redelivered: JetStream serves those before newer ones, so the
        sessions' turns stay in order. They can once ack_wait has passed since that
        owner was gone, which it was when this process took the partition. False if
        stopped meanwhile."""
        deadline = time.monotonic() + self.ack_wait + _POLL
        said = False
        while not self._stopping.is_set():
            checkpoint()
            waiting = await self._unacknowledged()
            if waiting == 0 or (waiting is not None and time.monotonic() > deadline):
                # Redelivered, they need not come back in the order they were sent (each
                # when its own wait ran out): held until all have, then handed out in order.
                self._owed = waiting
                self._hold_until = time.monotonic() + self.ack_wait + EXPIRES
                return True
            if waiting and not said:
                log.info(
                    "waiting for messages another runtime did not acknowledge",
                    consumer=self.durable,
                    unacknowledged=waiting,
                    seconds=round(deadline - time.monotonic(), 1),
                )
                said = True
            await _at_most(self._stopping, _POLL)
        return False

    async def _unacknowledged(self) -> int | None:
        """Messages of the consumer handed out and not acknowledged; None while NATS
        does not answer (a restart)."""
        try:
            info = await self.js.consumer_info(self.stream, self.durable)
        except nats.js.errors.NotFoundError:
            raise ConsumerGone(f"consumer {self.durable} does not exist") from None
        except (nats.errors.Error, TimeoutError) as e:
            log.debug("no consumer info", consumer=self.durable, error=str(e) or type(e).__name__)
            return None
        return info.num_ack_pending or 0

    async def _request(self, inbox: str) -> None:
        self._ended.clear()
        if self._stopping.is_set():
            return
        self._left, self._status = BATCH, None
        ask = {"batch": BATCH, "expires": int(EXPIRES * 1e9)}
        await self.nc.publish(self._next, json.dumps(ask).encode(), reply=inbox)
        await _at_most(self._ended, EXPIRES + _MARGIN)
        if self._status is None or self._status[0] in ("404", "408"):
            return
        code, description = self._status
        if code == "409" and "deleted" in description.lower():
            raise ConsumerGone(f"consumer {self.durable}: {description}")
        log.warning(
            "a pull request was refused", consumer=self.durable, status=code, why=description
        )
        await _at_most(self._stopping, _BACKOFF)

    def _hand_out(self, msg: Msg) -> None:
        task = asyncio.create_task(self.handle(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _hand_out_held(self) -> None:
        held, self._held, self._owed = self._held, [], 0
        for msg in sorted(held, key=_stream_sequence):
            self._hand_out(msg)

    async def _arrived(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            if self._owed > 0:
                self._held.append(msg)
                self._owed -= _redelivered(msg)
                if self._owed <= 0:
                    self._hand_out_held()
            else:
                self._hand_out(msg)
            self._left -= 1
            if self._left <= 0:
                self._ended.set()
            return
        if status == "100":  # a heartbeat
            return
        self._status = (status, (msg.headers or {}).get("Description", ""))
        self._ended.set()


def _redelivered(msg: Msg) -> int:
    try:
        return int(msg.metadata.num_delivered > 1)
    except Exception:  # not a JetStream message: counts as new
        return 0


def _stream_sequence(msg: Msg) -> int:
    try:
        return int(msg.metadata.sequence.stream)
    except Exception:
        return 0


async def _at_most(event: asyncio.Event, seconds: float) -> None:
    """Wait until ``event`` is set, for ``seconds`` at most (not with ``wait_for``, which
    may lose a cancellation: see cancelling.py)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
