"""Creating the JetStream streams, idempotently, at start, with what each keeps.

``TURNLOG_IN`` keeps a message until every consumer that wants it has had it (interest
retention): the app's runtime acknowledges it once its turn is on record and the router
reads it without acknowledging, so a handled message is gone, and one for an app whose
runtimes are down waits for them (the app's durable consumers stay). From NATS 2.10 it
stores each message under its session's partition (``partitioning``). Full, it refuses new
messages (producers get an error) rather than drop unhandled ones. ``TURNLOG_EVENTS`` is
a fan-out buffer (PostgreSQL keeps the log) and ``TURNLOG_DLQ`` a record for operators:
both keep messages for a time and up to a size, dropping the oldest first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StreamConfig, StreamInfo
from nats.js.errors import APIError, NotFoundError

from turnlog.services.adapters.nats.partitioning import subject_transform
from turnlog.services.adapters.nats.router import ensure_router_consumer
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.app.log.errors import StoreError
from turnlog.services.settings import StreamLimits

log = structlog.get_logger("turnlog.streams")

# Republishing an event within this window is dropped by JetStream (Nats-Msg-Id = log id +
# position); it covers a relay restart. JetStream refuses a window longer than the stream's
# max age, so a shorter max age shortens it.
DUPLICATE_WINDOW = 15 * 60.0
INBOUND_DUPLICATE_WINDOW = 120.0
_SETTINGS = {
    "IN": "TURNLOG_IN_MAX_BYTES",
    "EVENTS": "TURNLOG_EVENTS_MAX_BYTES and TURNLOG_EVENTS_MAX_AGE",
    "DLQ": "TURNLOG_DLQ_MAX_BYTES and TURNLOG_DLQ_MAX_AGE",
}


class StreamSetupError(StoreError):
    """Raised when the NATS server refuses a stream as configured (typically: not enough
    storage for the max bytes asked for)."""

    code = "stream_setup_error"


def stream_configs(
    subjects: Subjects, limits: StreamLimits, *, partitioned: bool = False
) -> list[StreamConfig]:
    """The inbound, events and dead-letter streams as ``limits`` has them; the inbound
    one storing messages by partition if ``partitioned``."""
    p = subjects.prefix
    return [
        StreamConfig(
            name=subjects.stream_in,
            subjects=[f"{p}.in.>"],
            retention=RetentionPolicy.INTEREST,
            discard=DiscardPolicy.NEW,
            max_bytes=_bytes(limits.in_max_bytes),
            duplicate_window=INBOUND_DUPLICATE_WINDOW,
            subject_transform=subject_transform(subjects) if partitioned else None,
        ),
        StreamConfig(
            name=subjects.stream_events,
            subjects=[f"{p}.events.>"],
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            max_age=limits.events_max_age,
            max_bytes=_bytes(limits.events_max_bytes),
            duplicate_window=_window(DUPLICATE_WINDOW, limits.events_max_age),
        ),
        StreamConfig(
            name=subjects.stream_dlq,
            subjects=[f"{p}.dlq.>"],
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            max_age=limits.dlq_max_age,
            max_bytes=_bytes(limits.dlq_max_bytes),
            duplicate_window=_window(INBOUND_DUPLICATE_WINDOW, limits.dlq_max_age),
        ),
    ]


async def ensure_streams(
    js: JetStreamContext,
    subjects: Subjects,
    limits: StreamLimits | None = None,
    *,
    update: bool = True,
    partitioned: bool = False,
    before_partitioning: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Create the inbound, events and dead-letter streams, or (``update``) bring their
    config up to date; producers create missing ones only, never overriding what the
    operator configured turnlog's processes with. The router's consumer is made with the
    inbound stream, so messages sent before any runtime started wait for one.

    ``partitioned`` (NATS 2.10 and later): the inbound stream stores messages by
    partition. An existing one gets its transform only with ``before_partitioning``,
    called first (it makes every app's partition consumers, so that no message is stored
    for none), and once it has one keeps it, whoever updates it."""
    for config in stream_configs(subjects, limits or StreamLimits(), partitioned=partitioned):
        assert config.name is not None
        try:
            info = await js.stream_info(config.name)
        except NotFoundError:
            await _create(js, config)
            continue
        if not update:
            continue
        if config.name == subjects.stream_in:
            await _partitioning(config, info, before_partitioning)
        await _update(js, config, info)
    await ensure_router_consumer(js, subjects)


async def _partitioning(
    config: StreamConfig, info: StreamInfo, before: Callable[[], Awaitable[None]] | None
) -> None:
    """The inbound stream's transform: kept once it has one; added only after ``before``."""
    had = info.config.subject_transform
    if had is not None:
        config.subject_transform = had
    elif config.subject_transform is not None:
        if before is None:
            config.subject_transform = None
            return
        await before()
        log.info("inbound stream now stores messages by partition", stream=config.name)


async def _create(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except APIError as e:
        raise StreamSetupError(_refused(config, e)) from None


async def _update(js: JetStreamContext, config: StreamConfig, info: StreamInfo) -> None:
    """Update the stream; one whose retention the server will not change (NATS before
    2.10) is left as it is, with a warning saying how to move it."""
    was = info.config.retention
    try:
        await js.update_stream(config)
    except APIError as e:
        if was != config.retention and "retention" in (e.description or ""):
            log.warning(
                "inbound stream kept as it is: this NATS server cannot change its retention;"
                " handled messages stay until it is recreated (see README, The bus)",
                stream=config.name,
                retention=getattr(was, "value", was),
                wanted=getattr(config.retention, "value", config.retention),
                server_said=e.description,
            )
            return
        raise StreamSetupError(_refused(config, e)) from None
    if was != config.retention:
        log.info(
            "inbound stream now has interest retention: handled messages were removed",
            stream=config.name,
        )


def _refused(config: StreamConfig, error: APIError) -> str:
    kind = (config.name or "").rsplit("_", 1)[-1]
    return (
        f"NATS refused stream {config.name}: {error.description or error}"
        f" (its limits are set by {_SETTINGS.get(kind, 'TURNLOG_*_MAX_BYTES')})"
    )


def _bytes(limit: int) -> int:
    return limit if limit > 0 else -1  # -1: no limit


def _window(window: float, max_age: float) -> float:
    return min(window, max_age) if max_age > 0 else window
