"""One append's events chained: each event's hash from its predecessor's, as every event
log adapter records them."""

from __future__ import annotations

from collections.abc import Sequence

from turnlog.services.app.log import hashing
from turnlog.services.app.log.records import NewEvent, RecordedEvent


class Chained:
    """Events of one append with their hash chain computed from ``prev`` (the hash of
    the stream's event at ``expected``, or GENESIS), and their records once placed."""

    __slots__ = ("events", "expected", "hashes", "prev", "stream_id")

    def __init__(
        self, stream_id: str, expected: int, events: Sequence[NewEvent], prev: bytes
    ) -> None:
        self.stream_id, self.expected, self.events, self.prev = stream_id, expected, events, prev
        self.hashes: list[bytes] = []
        canonical, chain, version = hashing.canonical, hashing.chain, expected
        for e in events:
            version += 1
            body = canonical(
                stream_id,
                version,
                e.type,
                e.schema_version,
                e.recorded_at,
                e.correlation_id,
                e.causation_id,
                e.actor,
                e.payload,
            )
            prev = chain(prev, body)
            self.hashes.append(prev)

    @property
    def prev_hashes(self) -> list[bytes]:
        return [self.prev, *self.hashes[:-1]]

    def records(self, positions: Sequence[int]) -> list[RecordedEvent]:
        stream_id, version, prev = self.stream_id, self.expected, self.prev
        records = []
        for position, e, digest in zip(positions, self.events, self.hashes, strict=True):
            version += 1
            records.append(
                RecordedEvent(
                    position=position,
                    stream_id=stream_id,
                    version=version,
                    type=e.type,
                    schema_version=e.schema_version,
                    payload=e.payload,
                    recorded_at=e.recorded_at,
                    correlation_id=e.correlation_id,
                    causation_id=e.causation_id,
                    actor=e.actor,
                    prev_hash=prev,
                    hash=digest,
                )
            )
            prev = digest
        return records
