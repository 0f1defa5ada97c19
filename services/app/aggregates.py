"""Every aggregate loaded from and saved to the event log the same way: its stream read,
personal fields unsealed, events folded through the one mapping; pending events mapped,
sealed with the key of the user whose data they are, appended at the version loaded."""

from __future__ import annotations

from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.domain import BaseAggregate
from msgspec.structs import replace

from turnlog.services.app import mapping
from turnlog.services.app.log.codec import EventCodec
from turnlog.services.app.log.records import RecordedEvent
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.ports import EventLog

A = TypeVar("A", bound=BaseAggregate[Any])


class AggregateStore:
    def __init__(self, log: EventLog, codec: EventCodec = mapping.CODEC) -> None:
        self.log, self.keyring, self.codec = log, log.keyring, codec

    async def load(
        self,
        stream_id: str,
        originator_id: UUID,
        into: A | None = None,
        *,
        kind: type[A] | None = None,
        after: int = 0,
        secrets: bool = False,
    ) -> A | None:
        """``into`` (None, a snapshot's state, or an empty record) with the stream's
        events after version ``after`` applied; None if there are none and no ``into``.
        ``kind``: the aggregate's class, when there is no ``into``. ``secrets``: open
        secret fields (credentials) too."""
        records = await self.log.read_stream(stream_id, after_version=after)
        aggregate: Any = into
        for record in await self.keyring.unseal(records, secrets=secrets):
            event = mapping.to_domain_event(record, originator_id, self.codec)
            aggregate = event.mutate(aggregate)
        loaded: A | None = aggregate
        return loaded

    async def save(
        self,
        stream_id: str,
        aggregate: BaseAggregate[Any],
        meta: Metadata,
        *,
        user: str | None = None,
        holding: Any = None,
        plain: bool = False,
    ) -> list[RecordedEvent]:
        """Append ``aggregate``'s pending events (ConcurrencyConflict when its stream
        moved on since it was loaded). ``user``: whose personal data they are (sealed
        with that user's key); ``holding``: a transaction of the log's to append in;
        ``plain``: the records with their payloads as they were before sealing (for a
        view kept in that same transaction)."""
        pending = aggregate.collect_events()
        if not pending:
            return []
        new = unsealed = [mapping.to_new_event(e, meta, self.codec) for e in pending]
        if user is not None and holding is not None:
            new = await self.keyring.seal(user, new, holding=holding)
        elif user is not None:  # reading the key waits out a restart, as the append does
            new = await self.log.patiently(lambda: self.keyring.seal(user, unsealed))
        expected = pending[0].originator_version - 1
        records = await self.log.append(stream_id, expected, new, connection=holding)
        if plain:
            records = [
                replace(r, payload=e.payload) for r, e in zip(records, unsealed, strict=True)
            ]
        return records
