"""JetStream publishes sent one after another without waiting, their acknowledgements
awaited later, together.

Every acknowledgement comes back on one reply inbox of the pipeline's own (nats-py's
``publish_async`` makes a future, a semaphore wait and a random token per message).
Each message names the one sent before it (``Nats-Expected-Last-Msg-Id``): JetStream
stores a message only right after its predecessor, so a pipeline lands in the order it
was sent or, from the first message it lost (a connection cut while later messages wait
in nats-py's reconnect buffer), not at all: no later message overtakes a lost one. A
message that repeats one on record within the stream's duplicate window is acknowledged
as a duplicate before that check, so a pipeline started again from an earlier message of
its own passes the ones on record as duplicates and goes on from the last of them.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from turnlog.services.app.log.errors import StoreError

MSG_ID = "Nats-Msg-Id"
LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"


class _ApiError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _PubAck(msgspec.Struct):
    """JetStream's answer to a publish (forward compatible: other fields ignored)."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _ApiError | None = None


_pub_ack = msgspec.json.Decoder(_PubAck)


class PublishRefused(StoreError):
    """Set on a pipelined publish's acknowledgement when JetStream refuses the message
    (its predecessor is not the last one stored, a stream limit, JetStream away), or
    when the pipeline is closed before it answered."""

    code = "publish_refused"

    def __init__(self, description: str, err_code: int = 0) -> None:
        self.description = description
        self.err_code = err_code
        super().__init__(f"JetStream refused a publish: {description}")


class Pipeline:
    """Publishes on ``nc`` whose acknowledgements are futures: True once stored, False
    if a duplicate of a message on record, PublishRefused otherwise."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self._inbox = ""
        self._sub: Subscription | None = None
        self._waiting: dict[str, asyncio.Future[bool]] = {}
        self._sent = 0
        self._last = ""  # the id of the message sent last; "" names none

    async def start(self) -> None:
        """Listen for acknowledgements; the first message names no predecessor."""
        self._last = ""
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(f"{self._inbox}.*", cb=self._answered)

    async def close(self) -> None:
        """Stop listening; what was not answered yet is refused."""
        if self._sub is not None:
            with contextlib.suppress(Exception):  # a connection already closing
                await self._sub.unsubscribe()
            self._sub = None
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            _refuse(future, PublishRefused("the pipeline was closed"))

    def unchain(self) -> None:
        """The next message names no predecessor: the first of a pipeline started again
        after a refusal, whose predecessors are all on record."""
        self._last = ""

    async def publish(self, subject: str, body: bytes, msg_id: str) -> asyncio.Future[bool]:
        """Send now; the acknowledgement is the future returned."""
        self._sent += 1
        token = str(self._sent)
        headers = {MSG_ID: msg_id, LAST_MSG_ID: self._last} if self._last else {MSG_ID: msg_id}
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        try:
            await self.nc.publish(subject, body, reply=f"{self._inbox}.{token}", headers=headers)
        except BaseException:
            self._waiting.pop(token, None)
            raise
        self._last = msg_id
        return future

    def forget(self, acks: list[asyncio.Future[bool]]) -> None:
        """Stop waiting for ``acks`` (a pipeline given up): answers that come later are
        dropped."""
        for ack in acks:
            ack.cancel()
        self._waiting = {t: f for t, f in self._waiting.items() if not f.done()}

    async def _answered(self, msg: Msg) -> None:
        future = self._waiting.pop(msg.subject.rpartition(".")[2], None)
        if future is None or future.done():
            return
        if not msg.data:  # a status (503: no responders), JetStream not there
            status = (msg.headers or {}).get("Status", "")
            _refuse(future, PublishRefused(f"no answer from JetStream (status {status})"))
            return
        try:
            ack = _pub_ack.decode(msg.data)
        except msgspec.DecodeError as e:
            _refuse(future, PublishRefused(f"unreadable acknowledgement: {e}"))
            return
        if ack.error is not None:
            _refuse(future, PublishRefused(ack.error.description, ack.error.err_code))
        else:
            future.set_result(not ack.duplicate)


def _refuse(future: asyncio.Future[bool], error: PublishRefused) -> None:
    """Refuse ``future``; one given up on (never awaited) is not logged for it."""
    if not future.done():
        future.set_exception(error)
        future.exception()  # marks it seen; awaiting it still raises
