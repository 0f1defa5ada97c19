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
from turnlog.services.app.log.records import RecordedEvent, Snapshot
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
        if after and session.version == after and not await self._at_head(stream_id, after):
            log.warning("snapshot ahead of its stream ignored", stream_id=stream_id, version=after)
            return await self._load(session_id, use_snapshot=False)
        return session

    async def _at_head(self, stream_id: str, version: int) -> bool:
        """Whether the stream has an event at ``version``: a snapshot taken by an earlier
        version of turnlog could hold changes that were never appended, and would refuse
        every append after it."""
        return bool(await self.store.read_stream(stream_id, version - 1, version))

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
        every, version = self.snapshot_every, session.version
        # The state to snapshot is the state these events make, taken now: the session may
        # change again (a live one does) while they are appended.
        state = None
        if every and version // every > expected // every:
            state = mapping.snapshot_state(session)
        recorded = await self.aggregates.save(
            str(session.id), session, meta or Metadata(), user=user_id
        )
        if not recorded:
            return []
        if state is not None and recorded[-1].version == version:
            snapshot = mapping.snapshot_at(session.id, version, state, recorded[-1].hash)
            await self._snapshot(snapshot, user_id)
        return recorded

    async def _snapshot(self, snapshot: Snapshot, user_id: str) -> None:
        """Keep a snapshot; one that cannot be written now is skipped (the next threshold
        takes one), never a reason to fail what is already on record."""
        try:
            await self.store.save_snapshot(await self.keyring.seal_snapshot(user_id, snapshot))
        except Exception as e:
            if not transient(e):
                raise
            log.warning("snapshot skipped: the database is away", stream_id=snapshot.stream_id)
