"""Moving a log between databases: export to JSON Lines, import from them.

``export`` writes one ``ExportedEvent`` a line (see ``turnlog.contracts.transfer``) in
global position order, or one stream in version order, from a single consistent snapshot.

``import_`` loads an export into an empty store, idempotently. Events keep their exported
positions, so exporting the imported store gives the same bytes. Every line's hash is
recomputed and every stream's chain is followed (from GENESIS at version 1, else from the
version before it, earlier in the file or already stored). An event already stored with the
same hash is skipped, so importing a file again is a no-op and an interrupted import can be
run again to finish it. A store that holds anything else is refused: the import would
interleave two logs.

Both directions work in batches and hold only a batch in memory, whatever the log's size.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from turnlog.contracts.transfer import ExportedEvent
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.rows import COLUMNS
from turnlog.services.app.log import hashing
from turnlog.services.app.log.errors import StoreError
from turnlog.services.app.log.records import RecordedEvent

EXPORT_BATCH = 2000
IMPORT_BATCH = 1000

Conn = asyncpg.Connection | PoolConnectionProxy
Progress = Callable[[int], None]
"""Called after each batch with the number of events exported (or read) so far."""

_encoder = msgspec.json.Encoder()
_json_value = msgspec.json.Decoder(msgspec.Raw)
_line_decoder = msgspec.json.Decoder(ExportedEvent)

_COLUMN_NAMES = [name.strip() for name in COLUMNS.split(",")]
_LOOKUP = (
    "SELECT e.stream_id, e.version, e.hash FROM unnest($1::text[], $2::integer[]) AS k(s, v)"
    " JOIN turnlog_events e ON e.stream_id = k.s AND e.version = k.v"
)
_ADVANCE_POSITIONS = (
    "SELECT setval('turnlog_events_position_seq', $1) WHERE $1 >"
    " (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END"
    " FROM turnlog_events_position_seq)"
)


class TransferError(StoreError):
    """Raised when an export or import cannot go on; ``line`` is the input line at fault,
    if any."""

    code = "transfer_error"

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)


@dataclass(frozen=True)
class ImportReport:
    """Events read from the input, written to the store, and skipped as already stored."""

    read: int
    inserted: int
    skipped: int


# -- export -------------------------------------------------------------------------------


async def export(
    store: EventStore,
    out: BinaryIO,
    *,
    session: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Progress | None = None,
) -> int:
    """Write the log's events to ``out`` as JSON Lines and return how many.

    All events in position order, or with ``session`` that stream's in version order;
    ``since`` (inclusive) and ``until`` (exclusive) bound ``recorded_at`` (naive times are
    taken as UTC). Rows come through a server-side cursor in one REPEATABLE READ read-only
    transaction, so the file is one consistent snapshot, written batch by batch. Raises
    TransferError for a stored payload that is not exactly one JSON value (the lines
    written before it stay written).
    """
    query, args = _export_query(session, since, until)
    count = 0
    async with store.pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            cursor = await conn.cursor(query, *args)
            while rows := await cursor.fetch(EXPORT_BATCH):
                out.write(_encoder.encode_lines([_exported(row) for row in rows]))
                count += len(rows)
                if progress is not None:
                    progress(count)
    return count


def _export_query(
    session: str | None, since: datetime | None, until: datetime | None
) -> tuple[str, list[Any]]:
    conditions: list[str] = []
    args: list[Any] = []
    for condition, value in (
        ("stream_id = ${}", session),
        ("recorded_at >= ${}", _aware(since)),
        ("recorded_at < ${}", _aware(until)),
    ):
        if value is not None:
            args.append(value)
            conditions.append(condition.format(len(args)))
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    order = "version" if session is not None else "position"
    return f"SELECT {COLUMNS} FROM turnlog_events{where} ORDER BY {order}", args


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _exported(row: asyncpg.Record | Sequence[Any]) -> ExportedEvent:
    """A stored row as a line; its payload must be exactly one JSON value, or the line
    could not carry it unchanged."""
    payload: bytes = row[5]
    try:
        whole = len(_json_value.decode(payload)) == len(payload)
    except msgspec.DecodeError:
        whole = False
    if not whole:
        msg = (
            f"event at position {row[0]} (stream {row[1]} version {row[2]}): its payload is"
            " not one JSON value, so it cannot be exported unchanged"
        )
        raise TransferError(msg)
    recorded_at: datetime = row[6]
    return ExportedEvent(
        position=row[0],
        stream_id=row[1],
        version=row[2],
        type=row[3],
        schema_version=row[4],
        recorded_at=recorded_at.astimezone(UTC).isoformat(timespec="microseconds"),
        correlation_id=row[7],
        causation_id=row[8],
        actor=row[9],
        payload=msgspec.Raw(payload),
        prev_hash=row[10].hex(),
        hash=row[11].hex(),
    )


# -- import -------------------------------------------------------------------------------


async def import_(
    store: EventStore,
    lines: Iterable[bytes] | AsyncIterable[bytes] | BinaryIO,
    *,
    progress: Progress | None = None,
) -> ImportReport:
    """Load an export (one line per item, trailing newline optional) into an empty store,
    idempotently, and report what was read, inserted and skipped.

    Raises TransferError, naming the line, for a line that is not an exported event, whose
    hash does not verify, that does not follow its stream's previous version, or whose
    (stream, version) is stored with a different hash; and when the store holds events
    that are not an earlier part of this same input. Lines are written in transactions of
    ``IMPORT_BATCH``: nothing of the batch holding a bad line is written.
    """
    loader = _Loader(store.pool)
    await loader.start()
    number = 0
    async for line in _each(lines):
        number += 1
        if len(line) <= 2 and not line.strip():
            continue  # a blank line, such as a final newline given as an item
        try:
            loader.add(number, _parse(number, line))
        except TransferError:
            await loader.flush(write=False)  # an earlier line's fault is reported first
            raise
        if len(loader.events) >= IMPORT_BATCH:
            await loader.flush()
            if progress is not None:
                progress(loader.read)
    await loader.flush()
    if progress is not None:
        progress(loader.read)
    return ImportReport(read=loader.read, inserted=loader.inserted, skipped=loader.skipped)


async def _each(lines: Iterable[bytes] | AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(lines, AsyncIterable):
        async for line in lines:
            yield line
    else:
        for line in lines:
            yield line


def _parse(number: int, line: bytes) -> RecordedEvent:
    """A line as the event it records, after checking its hash against its content."""
    try:
        e = _line_decoder.decode(line)
    except msgspec.DecodeError as error:
        raise TransferError(f"not an exported event: {error}", number) from None
    try:
        recorded_at = datetime.fromisoformat(e.recorded_at)
        prev_hash, digest = bytes.fromhex(e.prev_hash), bytes.fromhex(e.hash)
    except ValueError as error:
        raise TransferError(f"not an exported event: {error}", number) from None
    if recorded_at.tzinfo is None or len(prev_hash) != 32 or len(digest) != 32:
        raise TransferError("not an exported event: recorded_at or a hash is malformed", number)
    event = RecordedEvent(
        position=e.position,
        stream_id=e.stream_id,
        version=e.version,
        type=e.type,
        schema_version=e.schema_version,
        payload=bytes(e.payload),
        recorded_at=recorded_at,
        correlation_id=e.correlation_id,
        causation_id=e.causation_id,
        actor=e.actor,
        prev_hash=prev_hash,
        hash=digest,
    )
    body = hashing.canonical(
        event.stream_id,
        event.version,
        event.type,
        event.schema_version,
        event.recorded_at,
        event.correlation_id,
        event.causation_id,
        event.actor,
        event.payload,
    )
    if hashing.chain(prev_hash, body) != digest:
        msg = f"stream {e.stream_id} version {e.version}: the hash does not match the event"
        raise TransferError(msg, number)
    return event


class _Loader:
    """Collects verified events in a batch, then checks the batch against the store and
    writes the events it does not hold yet, in one transaction.

    Within a batch each stream's chain is followed in memory; a stream's first event in a
    batch is checked against the stored version before it, which earlier batches wrote
    (or found) before this one is looked at. So memory stays at one batch.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.read = self.inserted = self.skipped = 0
        self.events: list[RecordedEvent] = []
        self.numbers: list[int] = []
        self.tips: dict[str, tuple[int, bytes]] = {}  # this batch's last event per stream
        self.anchored: set[int] = set()  # indexes of events following a stored version
        self.last_position = 0
        self.stored_last = 0  # the store's last position before the import
        self.loading = False  # whether events may be written (else only found)
        self.found = 0  # events found stored while not loading

    async def start(self) -> None:
        self.stored_last = int(
            await self.pool.fetchval("SELECT coalesce(max(position), 0) FROM turnlog_events")
        )
        self.loading = self.stored_last == 0

    def add(self, number: int, event: RecordedEvent) -> None:
        """Take a verified event, checking its order and, within the batch, its chain."""
        if event.position <= self.last_position:
            msg = f"position {event.position} does not follow {self.last_position}"
            raise TransferError(f"{msg}: the input is not one export in log order", number)
        tip = self.tips.get(event.stream_id)
        if tip is not None and event.version != tip[0] + 1:
            raise _broken_chain(number, event, f"comes right after version {tip[0]}")
        if tip is not None and event.prev_hash != tip[1]:
            raise _broken_chain(number, event, f"does not chain from version {tip[0]}")
        if event.version == 1 and event.prev_hash != hashing.GENESIS:
            raise _broken_chain(number, event, "does not chain from the genesis hash")
        if tip is None and event.version > 1:
            self.anchored.add(len(self.events))
        self.tips[event.stream_id] = (event.version, event.hash)
        self.last_position = event.position
        self.events.append(event)
        self.numbers.append(number)
        self.read += 1

    async def flush(self, *, write: bool = True) -> None:
        """Check the batch against the store and, if ``write``, insert what it lacks."""
        if not self.events:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            stored = await self._stored(conn)
            rows: list[tuple[Any, ...]] = []
            for index, (number, event) in enumerate(zip(self.numbers, self.events, strict=True)):
                if index in self.anchored:
                    before = stored.get((event.stream_id, event.version - 1))
                    if before is None:
                        reason = f"follows version {event.version - 1}, which is not stored"
                        raise _broken_chain(number, event, reason)
                    if before != event.prev_hash:
                        reason = f"does not chain from stored version {event.version - 1}"
                        raise _broken_chain(number, event, reason)
                digest = stored.get((event.stream_id, event.version))
                if digest is not None:
                    if digest != event.hash:
                        msg = (
                            f"stream {event.stream_id} version {event.version} is already"
                            " stored with a different hash: the logs conflict"
                        )
                        raise TransferError(msg, number)
                    self.skipped += 1
                    if not self.loading:
                        self.found += 1
                    continue
                if not self.loading:
                    await self._begin_loading(conn, number, event)
                rows.append(msgspec.structs.astuple(event))
            if write and rows:
                await self._insert(conn, rows)
        self.events, self.numbers, self.tips, self.anchored = [], [], {}, set()

    async def _stored(self, conn: Conn) -> dict[tuple[str, int], bytes]:
        """The stored hashes of the batch's events and of the versions its streams'
        first events in the batch follow."""
        streams = [e.stream_id for e in self.events]
        versions = [e.version for e in self.events]
        for index in self.anchored:
            streams.append(self.events[index].stream_id)
            versions.append(self.events[index].version - 1)
        rows = await conn.fetch(_LOOKUP, streams, versions)
        return {(row[0], row[1]): row[2] for row in rows}

    async def _begin_loading(self, conn: Conn, number: int, event: RecordedEvent) -> None:
        """Allow writing into a store that was not empty only if all it holds is an earlier
        part of this input (an interrupted import being run again)."""
        held = int(await conn.fetchval("SELECT count(*) FROM turnlog_events"))
        if event.position <= self.stored_last or held != self.found:
            msg = (
                f"stream {event.stream_id} version {event.version} is not stored, and the"
                " store is not empty: it holds events that are not an earlier part of this"
                " import, so adding to it would interleave two logs. Import loads into an"
                " empty store, idempotently"
            )
            raise TransferError(msg, number)
        self.loading = True

    async def _insert(self, conn: Conn, rows: list[tuple[Any, ...]]) -> None:
        first, last = self.numbers[0], self.numbers[-1]
        try:
            await conn.copy_records_to_table("turnlog_events", records=rows, columns=_COLUMN_NAMES)
            await conn.execute(_ADVANCE_POSITIONS, rows[-1][0])
        except asyncpg.PostgresError as error:
            msg = f"lines {first}-{last} could not be written: {error}"
            raise TransferError(msg) from None
        self.inserted += len(rows)


def _broken_chain(number: int, event: RecordedEvent, reason: str) -> TransferError:
    return TransferError(f"stream {event.stream_id} version {event.version} {reason}", number)
