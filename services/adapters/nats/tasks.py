"""The task queue on NATS: a JetStream work queue of task ids that runtime workers pull
from (each message goes to one of them), and core NATS notices that stop cancelled tasks.

``turnlog.tasks.run.<app>.<name>`` (stream ``TURNLOG_TASKS``, work-queue retention; one
durable pull consumer per app, ``turnlog-tasks-<app>``, shared by its workers) and
``turnlog.tasks.cancel.<app>.<task_id>`` (core NATS), for prefix ``turnlog``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig
from nats.js.errors import NotFoundError

from turnlog.contracts.tasks import TaskCancelNotice, TaskQueued
from turnlog.services.adapters.nats.subjects import Subjects

_encode = msgspec.json.Encoder().encode
queued_decoder = msgspec.json.Decoder(TaskQueued)
_notice = msgspec.json.Decoder(TaskCancelNotice)


def stream_name(subjects: Subjects) -> str:
    return f"{subjects.prefix.upper()}_TASKS"


def run_subject(subjects: Subjects, app: str, name: str) -> str:
    return f"{subjects.prefix}.tasks.run.{app}.{name}"


def cancel_subject(subjects: Subjects, app: str, task_id: str) -> str:
    return f"{subjects.prefix}.tasks.cancel.{app}.{task_id}"


async def ensure_task_stream(js: JetStreamContext, subjects: Subjects) -> None:
    """Create the work-queue stream of tasks if it is not there."""
    name = stream_name(subjects)
    try:
        await js.stream_info(name)
    except NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=name,
                subjects=[f"{subjects.prefix}.tasks.run.>"],
                retention=RetentionPolicy.WORK_QUEUE,
                duplicate_window=120.0,
            )
        )


class TaskQueue:
    """Queues tasks, announces cancellations, and gives workers their subscriptions."""

    def __init__(self, nc: NATS, subjects: Subjects) -> None:
        self.nc, self.subjects = nc, subjects
        self.js = nc.jetstream()
        self._ready = False

    async def _ensure(self) -> None:
        if not self._ready:
            await ensure_task_stream(self.js, self.subjects)
            self._ready = True

    async def enqueue(self, app: str, name: str, task_id: str) -> None:
        """Queue a run of a task (idempotent: its id is the message id)."""
        await self._ensure()
        await self.js.publish(
            run_subject(self.subjects, app, name),
            _encode(TaskQueued(task_id=task_id)),
            stream=stream_name(self.subjects),
            headers={"Nats-Msg-Id": task_id},
        )

    async def announce_cancel(self, app: str, task_id: str, reason: str) -> None:
        notice = TaskCancelNotice(task_id=task_id, reason=reason)
        await self.nc.publish(cancel_subject(self.subjects, app, task_id), _encode(notice))
        await self.nc.flush()

    async def consumer(self, app: str, ack_wait: float) -> JetStreamContext.PullSubscription:
        """The app's durable pull consumer: its workers share it, each message goes to one."""
        await self._ensure()
        return await self.js.pull_subscribe(
            f"{self.subjects.prefix}.tasks.run.{app}.>",
            durable=f"{self.subjects.prefix}-tasks-{app}",
            stream=stream_name(self.subjects),
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=ack_wait),
        )

    async def on_cancel(
        self, app: str, stop: Callable[[TaskCancelNotice], Awaitable[None]]
    ) -> Subscription:
        async def arrived(msg: Msg) -> None:
            try:
                notice = _notice.decode(msg.data)
            except msgspec.DecodeError:
                return
            await stop(notice)

        return await self.nc.subscribe(cancel_subject(self.subjects, app, "*"), cb=arrived)
