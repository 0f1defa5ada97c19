"""The relay: every committed event onto TURNLOG_EVENTS, in position order, exactly once
after JetStream's dedupe (``Nats-Msg-Id`` = ``<log id>:<position>``). Payloads go out
unsealed: bus consumers get plain, schema-conformant payloads (erased fields as their
placeholders). A ``user.erased`` goes out on its own stream's subject and, as the erasure
notice, on ``<prefix>.events.<app>.<its stream>`` for every app it names
(``Nats-Msg-Id`` = ``<log id>:<position>:<app>``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Sequence

import msgspec
import structlog
from nats.js import JetStreamContext
from nats.js.api import PubAck

from turnlog.contracts.events import UserErased
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.follow import GlobalReader, follow
from turnlog.services.app.log.records import RecordedEvent, app_of

log = structlog.get_logger("turnlog.relay")


class _Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """Encode-side twin of contracts.bus.EventEnvelope: the payload goes out as stored,
    unsealed."""

    position: int
    stream_id: str
    version: int
    type: str
    schema_version: int
    recorded_at: str
    correlation_id: str | None
    causation_id: str | None
    actor: str | None
    payload: msgspec.Raw


_encode = msgspec.json.Encoder().encode
_erasure = msgspec.json.Decoder(UserErased)


class Relay:
    """Publishes the log after its saved position; saves the position only once
    JetStream has acknowledged everything before it, so a restart republishes at most
    an unacknowledged tail, which JetStream drops as duplicates."""

    def __init__(
        self,
        store: EventStore,
        js: JetStreamContext,
        subjects: Subjects,
        *,
        name: str = "relay",
        batch_size: int = 500,
        ack_timeout: float = 5.0,
        save_interval: float = 0.2,
    ) -> None:
        self.store = store
        self.keyring = store.keyring
        self.js = js
        self.subjects = subjects
        self.name = name
        self.batch_size = batch_size
        self.ack_timeout = ack_timeout
        self.reader: GlobalReader | None = None
        self._apps: OrderedDict[str, str] = OrderedDict()
        self.log_id = ""
        self.save_interval = save_interval
        self.published = 0
        self._saved = 0
        self._publish_progress = asyncio.Event()

    async def saved_position(self) -> int:
        value = await self.store.pool.fetchval(
            "SELECT position FROM turnlog_relay_positions WHERE name = $1", self.name
        )
        return int(value or 0)

    async def run(self) -> None:
        self.log_id = await self.store.pool.fetchval(
            "SELECT value FROM turnlog_meta WHERE key = 'log_id'"
        )
        start = await self.saved_position()
        self.published = self._saved = start
        self.reader = GlobalReader(self.store, start, self.batch_size)
        log.info("relay started", name=self.name, position=start)
        saver = asyncio.create_task(self._save_positions())
        try:
            # aclosing: a cancelled relay releases the follower's connection at once
            async with contextlib.aclosing(follow(self.reader)) as batches:
                async for batch in batches:
                    await self._publish(batch)
                    self.published = batch[-1].position
                    self._publish_progress.set()
        finally:
            saver.cancel()
            await asyncio.gather(saver, return_exceptions=True)
            try:
                await self._save(self.published)
            except Exception as e:  # the database is away: republishing a little is fine
                log.info("relay position not saved", error=str(e) or type(e).__name__)

    async def _save_positions(self) -> None:
        """Keep the saved position close behind what is published, off the hot path: a
        lost save only means republishing a little, which JetStream drops."""
        while True:
            await self._publish_progress.wait()
            self._publish_progress.clear()
            await self._save(self.published)
            await asyncio.sleep(self.save_interval)

    async def _save(self, position: int) -> None:
        if position <= self._saved:
            return
        async with self.store.pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")
            await conn.execute(
                "INSERT INTO turnlog_relay_positions (name, position) VALUES ($1, $2)"
                " ON CONFLICT (name) DO UPDATE SET position = excluded.position"
                " WHERE turnlog_relay_positions.position < excluded.position",
                self.name,
                position,
            )
        self._saved = position

    async def _publish(self, batch: Sequence[RecordedEvent]) -> None:
        """Publish ``batch`` until JetStream has acknowledged all of it. A batch cut off
        by a disconnect is published again whole; JetStream drops what it already has."""
        apps = await self._apps_of(batch)
        delay = 0.1
        while True:
            # unsealed again for each attempt: a retry never sends what a key erased
            # since the last attempt had sealed
            plain = await self.keyring.unseal(batch)
            acks: list[asyncio.Future[PubAck]] = []
            try:
                for r in plain:
                    body = envelope(r)
                    for subject, msg_id in self._targets(r, apps[r.stream_id]):
                        acks.append(
                            await self.js.publish_async(
                                subject, body, headers={"Nats-Msg-Id": msg_id}
                            )
                        )
                async with asyncio.timeout(self.ack_timeout):
                    await asyncio.gather(*acks)
                return
            except Exception as e:  # NATS away or JetStream not ready: republish all
                for ack in acks:
                    ack.cancel()  # an ack that never comes must not hold a publish slot
                log.warning(
                    "relay publish failed; retrying",
                    error=str(e) or type(e).__name__,
                    first=batch[0].position,
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _targets(self, r: RecordedEvent, app: str) -> list[tuple[str, str]]:
        """Where ``r`` is published, with its message id: its stream's subject; a
        ``user.erased`` also to every app that held the user's data (the erasure notice
        their consumers see), each copy with a message id of its own."""
        msg_id = f"{self.log_id}:{r.position}"
        targets = [(self.subjects.events(app, r.stream_id), msg_id)]
        if r.type == UserErased.TYPE:
            for other in _notified(r.payload):
                if other != app:
                    targets.append((self.subjects.events(other, r.stream_id), f"{msg_id}:{other}"))
        return targets

    async def _apps_of(self, batch: Sequence[RecordedEvent]) -> dict[str, str]:
        """The app of each stream, from its first event (cached)."""
        for r in batch:
            if r.version == 1 and r.stream_id not in self._apps:
                self._remember(r.stream_id, app_of(r.payload))
        missing = list({r.stream_id for r in batch if r.stream_id not in self._apps})
        if missing:
            rows = await self.store.pool.fetch(
                "SELECT stream_id, payload FROM turnlog_events"
                " WHERE stream_id = ANY($1::text[]) AND version = 1",
                missing,
            )
            for row in rows:
                self._remember(row[0], app_of(row[1]))
        return {r.stream_id: self._apps.get(r.stream_id, "_") for r in batch}

    def _remember(self, stream_id: str, app: str) -> None:
        self._apps[stream_id] = app
        if len(self._apps) > 100_000:
            self._apps.popitem(last=False)


def _notified(payload: bytes) -> tuple[str, ...]:
    """The apps a ``user.erased`` names (those that are one subject token)."""
    try:
        apps = _erasure.decode(payload).apps
    except msgspec.DecodeError:
        return ()
    return tuple(a for a in apps if a and not any(c in a for c in " .*>"))


def envelope(r: RecordedEvent) -> bytes:
    """``r`` as the relay publishes it (a ``bus.EventEnvelope``), its payload as given."""
    return _encode(
        _Envelope(
            position=r.position,
            stream_id=r.stream_id,
            version=r.version,
            type=r.type,
            schema_version=r.schema_version,
            recorded_at=r.recorded_at.isoformat(timespec="microseconds"),
            correlation_id=r.correlation_id,
            causation_id=r.causation_id,
            actor=r.actor,
            payload=msgspec.Raw(r.payload),
        )
    )
