"""The durable consumers an app's runtimes read the inbound stream through: one per
partition (``<p>-runtime-<app>-<n>``, pulled by the runtime owning the partition), and
the app-wide one (``<p>-runtime-<app>``, the legacy lane) for messages stored without a
partition: before the stream had its transform, or on a NATS server older than 2.10,
where it is the only one.

Every one is made before the app is registered: with interest retention, the inbound
stream keeps a message only for the consumers that exist when it arrives.
"""

from __future__ import annotations

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from turnlog.services.adapters.nats.partitioning import partition_subject, subject_transform
from turnlog.services.adapters.nats.router import registered
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.app.partitions import PARTITIONS

PARTITION_ACK_PENDING = 256  # messages of one partition handed out and not yet acked


def runtime_consumer(subjects: Subjects, app: str, ack_wait: float) -> ConsumerConfig:
    """The app's app-wide durable consumer (the legacy lane): the runtime holding the
    app's claim acknowledges each message once its turn is on record, which is what lets
    the inbound stream drop it."""
    return ConsumerConfig(
        durable_name=f"{subjects.prefix}-runtime-{app}",
        deliver_subject=f"{subjects.prefix}.deliver.runtime.{app}",
        filter_subject=subjects.inbound_all(app),
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=max(ack_wait, 1.0),
        max_ack_pending=1000,
        deliver_policy=DeliverPolicy.ALL,
    )


def partition_consumer(
    subjects: Subjects, app: str, partition: int, ack_wait: float
) -> ConsumerConfig:
    """One partition's durable pull consumer: pulled only by the runtime that owns the
    partition, which acknowledges each message once its turn is on record."""
    return ConsumerConfig(
        durable_name=partition_durable(subjects, app, partition),
        filter_subject=partition_subject(subjects, app, partition),
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=max(ack_wait, 1.0),
        max_ack_pending=PARTITION_ACK_PENDING,
        deliver_policy=DeliverPolicy.ALL,
    )


def partition_durable(subjects: Subjects, app: str, partition: int) -> str:
    return f"{subjects.prefix}-runtime-{app}-{partition}"


def durables(subjects: Subjects, app: str) -> list[str]:
    """The names of every consumer of the app's runtimes: the legacy lane's first."""
    partitions = [partition_durable(subjects, app, n) for n in range(PARTITIONS)]
    return [f"{subjects.prefix}-runtime-{app}", *partitions]


async def partitioned(js: JetStreamContext, subjects: Subjects) -> bool:
    """Whether the inbound stream stores messages by partition (has the transform)."""
    info = await js.stream_info(subjects.stream_in)
    return info.config.subject_transform == subject_transform(subjects)


async def ensure_runtime_consumer(
    js: JetStreamContext,
    subjects: Subjects,
    app: str,
    ack_wait: float,
    *,
    partitions: bool = False,
) -> None:
    """Make the app's consumers that are missing (the app-wide one, and with
    ``partitions`` one per partition), before the app is registered and its router
    reads: from then on the inbound stream keeps the app's messages for them, while no
    runtime of it consumes too. A partition consumer made with another ack wait gets
    this one (the ack wait a runtime waits out when it takes a partition over)."""
    if partitions:
        for n in range(PARTITIONS):
            config = partition_consumer(subjects, app, n, ack_wait)
            await _ensure(js, subjects, config, update=True)
    # last: once it exists, so do the others (what a producer waiting for the app sees)
    await _ensure(js, subjects, runtime_consumer(subjects, app, ack_wait), update=False)


async def _ensure(
    js: JetStreamContext, subjects: Subjects, config: ConsumerConfig, *, update: bool
) -> None:
    assert config.durable_name is not None
    try:
        info = await js.consumer_info(subjects.stream_in, config.durable_name)
    except nats.js.errors.NotFoundError:
        await js.add_consumer(subjects.stream_in, config)
        return
    if update and info.config.ack_wait != config.ack_wait:
        await js.add_consumer(subjects.stream_in, config)


async def ensure_every_app(js: JetStreamContext, subjects: Subjects, ack_wait: float) -> None:
    """Make the partition consumers of every app ever registered (before the inbound
    stream gets its partitions: from then on it keeps each app's messages for them, even
    while that app's runtimes are of an earlier version and read only the legacy lane)."""
    for app in await registered(js, subjects):
        await ensure_runtime_consumer(js, subjects, app, ack_wait, partitions=True)
