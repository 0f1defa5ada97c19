"""Which apps exist, and what happens to messages for any other.

Every runtime registers its app in a JetStream key-value bucket when it starts, once the
app's durable consumer exists. The router (one consumer shared by all runtimes, made with
the inbound stream) reads every inbound message and dead-letters those for an app no
runtime has ever registered; messages for a registered app wait in the stream for its
consumer, even while the app is down. (A message for a brand-new app that the router
reads before that app's first runtime has made its consumer is dead-lettered only: the
inbound stream keeps a message for the consumers that exist.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, KeyValueConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from turnlog.contracts import bus
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.app.ports import Metrics, NoMetrics

log = structlog.get_logger("turnlog.router")
_encode = msgspec.json.Encoder().encode


async def registry(js: JetStreamContext, subjects: Subjects) -> KeyValue:
    bucket = f"{subjects.prefix.upper()}_APPS"
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        return await js.create_key_value(KeyValueConfig(bucket=bucket))


async def register(js: JetStreamContext, subjects: Subjects, app: str) -> bool:
    """Record that ``app`` is served; True if this is the first time ever."""
    apps = await registry(js, subjects)
    try:
        await apps.get(app)
        first = False
    except KeyNotFoundError:
        first = True
    await apps.put(app, datetime.now(UTC).isoformat().encode())
    return first


def router_consumer(subjects: Subjects, start: DeliverPolicy = DeliverPolicy.ALL) -> ConsumerConfig:
    """The router's durable consumer. Every runtime (of any app under this prefix) runs a
    router; as one deliver group they see each inbound message once between them. It only
    reads (the app's own consumer is the one that acknowledges work), so no acks. The same
    deliver subject whoever creates it: routers starting at once then create one consumer
    (an identical config is no conflict) and all join it."""
    durable = f"{subjects.prefix}-router"
    return ConsumerConfig(
        durable_name=durable,
        deliver_group=durable,
        deliver_subject=f"{subjects.prefix}.deliver.router",
        ack_policy=AckPolicy.NONE,
        deliver_policy=start,
        filter_subject=subjects.inbound_all(),
    )


async def ensure_router_consumer(js: JetStreamContext, subjects: Subjects) -> None:
    """Make the router's consumer if it is missing: with interest retention, the inbound
    stream keeps only what some consumer wants, so messages sent before any runtime ever
    started would otherwise not be kept."""
    try:
        await js.consumer_info(subjects.stream_in, f"{subjects.prefix}-router")
    except NotFoundError:
        await js.add_consumer(subjects.stream_in, router_consumer(subjects))


class Router:
    """Dead-letters inbound messages for unregistered apps (reason ``unknown_app``)."""

    def __init__(
        self, js: JetStreamContext, subjects: Subjects, metrics: Metrics | None = None
    ) -> None:
        self.js = js
        self.subjects = subjects
        self.metrics = metrics or NoMetrics()
        self._known: dict[str, float] = {}

    async def run(self) -> None:
        apps = await registry(self.js, self.subjects)

        async def arrived(msg: Msg) -> None:
            app = msg.subject.split(".")[2] if msg.subject.count(".") == 3 else ""
            if not await self._is_known(apps, app):
                await self._dead_letter(app, msg.subject, msg.data)

        durable = f"{self.subjects.prefix}-router"
        # One made again after an earlier version's has read the stream already: from now.
        start = DeliverPolicy.NEW if await self._drop_ungrouped(durable) else DeliverPolicy.ALL
        sub = await self.js.subscribe(
            self.subjects.inbound_all(),
            durable=durable,
            queue=durable,
            stream=self.subjects.stream_in,
            cb=arrived,
            manual_ack=True,
            config=router_consumer(self.subjects, start),
        )
        try:
            await asyncio.Event().wait()
        finally:
            await sub.unsubscribe()

    async def _drop_ungrouped(self, durable: str) -> bool:
        """Delete a router consumer made without a deliver group (by an earlier version),
        which only one subscriber could bind; it is made again as a group. Whether one
        was deleted."""
        try:
            info = await self.js.consumer_info(self.subjects.stream_in, durable)
        except NotFoundError:
            return False
        if info.config.deliver_group:
            return False
        with contextlib.suppress(NotFoundError):
            await self.js.delete_consumer(self.subjects.stream_in, durable)
        return True

    async def _is_known(self, apps: KeyValue, app: str) -> bool:
        if self._known.get(app, 0.0) > time.monotonic():
            return True
        try:
            await apps.get(app)
        except (KeyNotFoundError, ValueError):
            return False
        self._known[app] = time.monotonic() + 60
        return True

    async def _dead_letter(self, app: str, subject: str, data: bytes) -> None:
        log.warning("message for an unknown app", subject=subject, app=app)
        parts = subject.split(".")
        letter = bus.DeadLetter(
            reason="unknown_app",
            detail=f"no runtime has ever served app {app!r}",
            subject=subject,
            app=app or "_",
            session_id=parts[3] if len(parts) == 4 and parts[3] != "new" else None,
            received_at=datetime.now(UTC).isoformat(timespec="microseconds"),
            original=data,
        )
        await self.js.publish(self.subjects.dlq(app or "_"), _encode(letter))
        # not labelled by the unknown name: producers choose it, and every label is a series
        self.metrics.dead_lettered("_unknown", "unknown_app")
