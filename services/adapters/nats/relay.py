"""The relay: every committed event onto TURNLOG_EVENTS, in position order, exactly once
after JetStream's dedupe (``Nats-Msg-Id`` = ``<log id>:<position>``). Payloads go out
unsealed: bus consumers get plain, schema-conformant payloads (erased fields as their
placeholders). A ``user.erased`` goes out on its own stream's subject and, as the erasure
notice, on ``<prefix>.events.<app>.<its stream>`` for every app it names
(``Nats-Msg-Id`` = ``<log id>:<position>:<app>``).

Batches are published as they are read, without waiting for the acknowledgements of
those before (a ``Pipeline``, in which JetStream stores nothing out of the order sent);
the acknowledgements are confirmed in order behind them. A refusal or a silence of
``ack_timeout`` rewinds the relay to the last position confirmed, and it publishes on
from there (what JetStream already has is acknowledged as a duplicate)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import structlog
from nats.aio.client import Client as NATS

from turnlog.contracts.events import UserErased
from turnlog.services.adapters.nats.pipeline import Pipeline, PublishRefused
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.follow import GlobalReader, follow
from turnlog.services.app.cancelling import checkpoint
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
_FIRST_DELAY = 0.1  # seconds before publishing again after a refusal, doubling up to
_MAX_DELAY = 5.0


@dataclass
class _Sent:
    """A batch published: its positions, the acknowledgements of its messages, by when
    they are due (loop time) and in which generation (one per rewind)."""

    first: int
    last: int
    acks: list[asyncio.Future[bool]]
    due: float
    generation: int


class Relay:
    """Publishes the log after its saved position; saves the position only once
    JetStream has acknowledged everything before it, so a restart republishes at most
    an unacknowledged tail, which JetStream drops as duplicates."""

    def __init__(
        self,
        store: EventStore,
        nc: NATS,
        subjects: Subjects,
        *,
        name: str = "relay",
        batch_size: int = 500,
        ack_timeout: float = 5.0,
        save_interval: float = 0.2,
        in_flight: int = 16,
    ) -> None:
        self.store = store
        self.keyring = store.keyring
        self.nc = nc
        self.subjects = subjects
        self.name = name
        self.batch_size = batch_size
        self.ack_timeout = ack_timeout
        self.reader: GlobalReader | None = None
        self._apps: OrderedDict[str, str] = OrderedDict()
        self.log_id = ""
        self.save_interval = save_interval
        self.published = 0  # every position up to this one is acknowledged
        self._saved = 0
        self._publish_progress = asyncio.Event()
        self._pipeline = Pipeline(nc)
        self.in_flight = in_flight  # batches sent and not yet confirmed, at most
        self._sent: deque[_Sent] = deque()  # oldest first
        self._sending = asyncio.Event()  # a batch was sent
        self._confirmed = asyncio.Event()  # a batch was confirmed (or given up)
        self._sent_to = 0  # the last position published in this generation
        self._generation = 0
        self._refused: BaseException | None = None  # why the relay rewound, until it goes on
        self._delay = _FIRST_DELAY

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
        self.published = self._saved = self._sent_to = start
        self._sent.clear()  # what a run before this one left unconfirmed
        self._generation += 1
        self._refused = None
        self.reader = GlobalReader(self.store, start, self.batch_size)
        log.info("relay started", name=self.name, position=start)
        await self._pipeline.start()
        helpers = [
            asyncio.create_task(self._confirm()),
            asyncio.create_task(self._save_positions()),
        ]
        try:
            # aclosing: a cancelled relay releases the follower's connection at once
            async with contextlib.aclosing(follow(self.reader)) as batches:
                async for batch in batches:
                    await self._relay(batch)
        finally:
            await self._stop(helpers)

    async def _stop(self, helpers: list[asyncio.Task[None]]) -> None:
        """Stop; confirm what is in flight (for a second at most) and save the position
        reached."""
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            async with asyncio.timeout(1.0):
                while self._sent:
                    await self._confirm_oldest()
        await self._pipeline.close()
        try:
            await self._save(self.published)
        except Exception as e:  # the database is away: republishing a little is fine
            log.info("relay position not saved", error=str(e) or type(e).__name__)

    async def _relay(self, batch: Sequence[RecordedEvent]) -> None:
        """Publish ``batch`` if it follows what this generation published (one read
        before a rewind does not: it is read again)."""
        assert self.reader is not None
        if self._refused is not None:
            await asyncio.sleep(self._delay)
            self._delay = min(self._delay * 2, _MAX_DELAY)
            self._refused = None
            self._pipeline.unchain()
            self._sent_to = self.published
        if self.reader.batch_after != self._sent_to:
            return
        generation = self._generation
        acks: list[asyncio.Future[bool]] = []
        try:
            # unsealed at each attempt: a retry never sends what a key erased since
            apps = await self._apps_of(batch)
            for r in await self.keyring.unseal(batch):
                body = envelope(r)
                for subject, msg_id in self._targets(r, apps[r.stream_id]):
                    acks.append(await self._pipeline.publish(subject, body, msg_id))
        except Exception as e:  # NATS away or refusing, the database away: again
            self._pipeline.forget(acks)
            self._rewind(e, batch[0].position)
            return
        self._sent_to = batch[-1].position
        due = asyncio.get_running_loop().time() + self.ack_timeout
        self._sent.append(_Sent(batch[0].position, batch[-1].position, acks, due, generation))
        self._sending.set()
        while len(self._sent) > self.in_flight:  # read on once the oldest is confirmed
            self._confirmed.clear()
            await self._confirmed.wait()

    async def _confirm(self) -> None:
        """Confirm what was sent, oldest first, as its acknowledgements come."""
        while True:
            checkpoint()
            while not self._sent:
                self._sending.clear()
                await self._sending.wait()
            await self._confirm_oldest()

    async def _confirm_oldest(self) -> None:
        """Await the acknowledgements of the oldest batch in flight and move ``published``
        on to its end; at a refusal or a silence, rewind. It leaves the queue only once
        settled, so a stop in between confirms it again rather than skip it."""
        sent = self._sent[0]
        try:
            if sent.generation == self._generation:  # not sent before a rewind
                async with asyncio.timeout_at(sent.due):
                    for ack in sent.acks:
                        await ack
            # (again: a rewind meanwhile went back to the position before this batch)
            if sent.generation == self._generation:
                self.published = sent.last
                self._delay = _FIRST_DELAY
                self._publish_progress.set()
        except (PublishRefused, TimeoutError) as e:
            if sent.generation == self._generation:
                self._rewind(e, sent.first)
        finally:
            if sent.generation != self._generation:  # given up, its answers dropped
                self._pipeline.forget(sent.acks)
            if sent.generation != self._generation or sent.last <= self.published:
                self._sent.popleft()
                self._confirmed.set()

    def _rewind(self, error: BaseException, first: int) -> None:
        """Publish again from after ``published``: what was sent since is given up (the
        pipeline refuses its successors of a lost message), and the follower is woken to
        read it again."""
        assert self.reader is not None
        if self._refused is None:
            log.warning(
                "relay publish failed; publishing again from the last acknowledged position",
                error=str(error) or type(error).__name__,
                first=first,
                position=self.published,
                retry_in=self._delay,
            )
        self._generation += 1
        self._refused = error
        self.reader.rewind(self.published)
        self.store.announce()

    async def _save_positions(self) -> None:
        """Keep the saved position close behind what is published, off the hot path: a
        lost save only means republishing a little, which JetStream drops."""
        while True:
            checkpoint()
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
