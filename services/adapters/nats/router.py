"""Which apps exist, and what happens to messages for any other.

Every runtime registers its app in a JetStream key-value bucket when it starts, once the
app's durable consumers exist. The router (one consumer shared by all runtimes, made with
the inbound stream) reads every inbound message and dead-letters those for an app no
runtime has ever registered, and those on a subject no runtime reads; messages for a
registered app wait in the stream for its consumers, even while the app is down. (A
message for a brand-new app that the router reads before that app's first runtime has
made its consumers is dead-lettered only: the inbound stream keeps a message for the
consumers that exist.)
"""

from __future__ import annotations

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
from turnlog.services.adapters.nats.partitioning import parse_inbound, producer_subject
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.app.cancelling import until_cancelled
from turnlog.services.app.ports import Metrics, NoMetrics

log = structlog.get_logger("turnlog.router")
_encode = msgspec.json.Encoder().encode


async def registry(js: JetStreamContext, subjects: Subjects) -> KeyValue:
    bucket = f"{subjects.prefix.upper()}_APPS"
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        return await js.create_key_value(KeyValueConfig(bucket=bucket))


async def registered(js: JetStreamContext, subjects: Subjects) -> list[str]:
    """Every app ever registered (read from the bucket's stream: what a runtime's NATS
    user may read, where listing the keys would need a consumer of it)."""
    bucket = f"{subjects.prefix.upper()}_APPS"
    await registry(js, subjects)
    info = await js.stream_info(f"KV_{bucket}", subjects_filter=f"$KV.{bucket}.>")
    return sorted(subject.split(".", 2)[2] for subject in info.state.subjects or {})


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
    reads (the app's own consumers are the ones that acknowledge work), so no acks. The
    same deliver subject whoever creates it: routers starting at once then create one
    consumer (an identical config is no conflict) and all join it. It reads every inbound
    subject, partitioned or not, so that one no runtime consumer takes is dead-lettered."""
    durable = f"{subjects.prefix}-router"
    return ConsumerConfig(
        durable_name=durable,
        deliver_group=durable,
        deliver_subject=f"{subjects.prefix}.deliver.router",
        ack_policy=AckPolicy.NONE,
        deliver_policy=start,
        filter_subject=f"{subjects.prefix}.in.>",
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
    """Dead-letters inbound messages for unregistered apps (reason ``unknown_app``), and
    those on a subject no runtime reads (``bad_subject``: a partition that does not exist,
    or any partition on a server without partitions)."""

    def __init__(
        self,
        js: JetStreamContext,
        subjects: Subjects,
        metrics: Metrics | None = None,
        *,
        partitioned: bool = True,
    ) -> None:
        self.js = js
        self.subjects = subjects
        self.metrics = metrics or NoMetrics()
        self.partitioned = partitioned
        self._known: dict[str, float] = {}

    async def run(self) -> None:
        apps = await registry(self.js, self.subjects)

        async def arrived(msg: Msg) -> None:
            await self._route(apps, msg.subject, msg.data)

        durable = f"{self.subjects.prefix}-router"
        # One made again after an earlier version's has read the stream already: from now.
        start = DeliverPolicy.NEW if await self._drop_outdated(durable) else DeliverPolicy.ALL
        config = router_consumer(self.subjects, start)
        assert config.filter_subject is not None
        sub = await self.js.subscribe(
            config.filter_subject,
            durable=durable,
            queue=durable,
            stream=self.subjects.stream_in,
            cb=arrived,
            manual_ack=True,
            config=config,
        )
        try:
            await until_cancelled()
        finally:
            await sub.unsubscribe()

    async def _route(self, apps: KeyValue, subject: str, data: bytes) -> None:
        parsed = parse_inbound(subject, self.subjects.prefix)
        parts = subject.split(".")
        app = parsed.app if parsed else (parts[2] if len(parts) > 2 else "")
        known = await self._is_known(apps, app)
        if not known:
            detail = f"no runtime has ever served app {app!r}"
            await self._dead_letter("unknown_app", detail, app, subject, data)
        elif parsed is None or (parsed.partition is not None and not self.partitioned):
            where = "the inbound stream has no partitions" if parsed else "no runtime reads it"
            detail = f"{subject}: {where}; publish on {self.subjects.inbound(app, '<session>')}"
            await self._dead_letter("bad_subject", detail, app, subject, data)

    async def _drop_outdated(self, durable: str) -> bool:
        """Delete a router consumer made by an earlier version: without a deliver group
        (only one subscriber could bind it) or reading only 4-token subjects; it is made
        again as it is now. Whether one was deleted."""
        try:
            info = await self.js.consumer_info(self.subjects.stream_in, durable)
        except NotFoundError:
            return False
        wanted = router_consumer(self.subjects).filter_subject
        if info.config.deliver_group and info.config.filter_subject == wanted:
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

    async def _dead_letter(
        self, reason: str, detail: str, app: str, subject: str, data: bytes
    ) -> None:
        known = reason != "unknown_app"
        log.warning("inbound message no runtime takes", subject=subject, app=app, reason=reason)
        parsed = parse_inbound(subject, self.subjects.prefix)
        if self.partitioned:  # else stored as the producer sent it
            subject = producer_subject(subject, self.subjects.prefix)
        letter = bus.DeadLetter(
            reason=reason,
            detail=detail,
            subject=subject,
            app=app or "_",
            session_id=parsed.session_id if parsed else None,
            received_at=datetime.now(UTC).isoformat(timespec="microseconds"),
            original=data,
        )
        await self.js.publish(self.subjects.dlq(app or "_"), _encode(letter))
        # not labelled by an unknown name: producers choose it, and every label is a series
        self.metrics.dead_lettered(app if known else "_unknown", reason)
