"""Loading and saving Session aggregates on the event store, with snapshots."""

from __future__ import annotations

from functools import partial
from uuid import UUID

import structlog

from turnlog.contracts import events as wire
from turnlog.domain.session import Session
from turnlog.services.app import mapping
from turnlog.services.app.aggregates import AggregateStore
from turnlog.services.app.log.codec import EventCodec
from turnlog.services.app.log.errors import StoreError, transient
from turnlog.services.app.log.records import RecordedEvent
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.ports import EventLog
from turnlog.services.app.sealing import KeyRing

log = structlog.get_logger("turnlog.repository")


class SessionNotFound(StoreError):
    """Raised when a session id has no recorded events."""

    code = "session_not_found"

    def __init__(self, session_id: UUID) -> None:
        self.session_id = session_id
        super().__init__(f"no session {session_id}")


class SessionRepository:
    """Sessions as aggregates: a snapshot plus the events after it, and appends back.
    Personal fields are sealed with the key of the session's user on the way in, and
    unsealed on the way out (placeholders once that user is erased)."""

    def __init__(
        self,
        store: EventLog,
        codec: EventCodec | None = None,
        snapshot_every: int = 200,
        keyring: KeyRing | None = None,
    ) -> None:
        self.store = store
        self.aggregates = AggregateStore(store, codec or mapping.CODEC)
        self.snapshot_every = snapshot_every
        self.keyring = keyring or store.keyring

    async def load(self, session_id: UUID, *, use_snapshot: bool = True) -> Session:
        """The session as recorded; waits out a database restart (up to the store's
        ``retry_for``) rather than failing, so its turns keep their order."""
        return await self.store.patiently(lambda: self._load(session_id, use_snapshot))

    async def _load(self, session_id: UUID, use_snapshot: bool) -> Session:
        stream_id = str(session_id)
        session: Session | None = None
        if use_snapshot:
            snapshot = await self.store.load_snapshot(stream_id)
            if snapshot is not None and snapshot.schema_version == mapping.SNAPSHOT_SCHEMA_VERSION:
                snapshot = await self.keyring.unseal_snapshot(snapshot)
                if snapshot is not None:  # None: sealed with a destroyed key
                    session = mapping.from_snapshot(snapshot)
        after = session.version if session is not None else 0
        session = await self.aggregates.load(
            stream_id, session_id, session, kind=Session, after=after
        )
        if session is None:
            raise SessionNotFound(session_id)
        return session

    async def open_turn(self, session: Session) -> list[wire.EventPayload]:
        """The events of ``session``'s open turn, from its ``message_received`` on
        (personal fields unsealed); empty when no turn is open."""
        if session.open_turn is None:
            return []
        stream_id, tail = str(session.id), 64
        while True:
            after = max(0, session.version - tail)
            read = partial(self.store.read_stream, stream_id, after_version=after)
            records = await self.store.patiently(read)
            opened = [i for i, r in enumerate(records) if r.type == wire.MessageReceived.TYPE]
            if opened or after == 0:
                break
            tail *= 8
        records = await self.keyring.unseal(records[opened[-1] :] if opened else [])
        return [self.aggregates.codec.decode(r.type, r.schema_version, r.payload) for r in records]

    async def save(self, session: Session, meta: Metadata | None = None) -> list[RecordedEvent]:
        """Append the session's pending events; snapshot when a threshold is crossed."""
        expected = session.version - len(session.pending_events)
        user_id = session.user.id
        recorded = await self.aggregates.save(
            str(session.id), session, meta or Metadata(), user=user_id
        )
        if not recorded:
            return []
        last = recorded[-1]
        if (
            self.snapshot_every
            and last.version // self.snapshot_every > expected // self.snapshot_every
        ):
            await self._snapshot(session, user_id, last.hash)
        return recorded

    async def _snapshot(self, session: Session, user_id: str, last_hash: bytes) -> None:
        """Keep a snapshot; one that cannot be written now is skipped (the next threshold
        takes one), never a reason to fail what is already on record."""
        snapshot = mapping.take_snapshot(session, last_hash)
        try:
            await self.store.save_snapshot(await self.keyring.seal_snapshot(user_id, snapshot))
        except Exception as e:
            if not transient(e):
                raise
            log.warning("snapshot skipped: the database is away", session_id=str(session.id))
