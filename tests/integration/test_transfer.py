"""Export and import against real PostgreSQL: a round trip through a second database is
byte-identical, re-imports are no-ops, filters pick the right events, and bad input is
refused with the line at fault."""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from tests.conftest import with_database
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.postgres import transfer
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.transfer import ImportReport, TransferError, export, import_
from turnlog.services.app.log import hashing
from turnlog.services.app.log.records import NewEvent, RecordedEvent

BASE = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
STREAMS = ("session-a", "session-b", "doc-c")


@pytest.fixture
async def other(servers: Endpoints) -> AsyncIterator[EventStore]:
    """A store on a second, empty database of this test's own."""
    name = f"turnlog_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(servers.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    store = await EventStore.connect(with_database(servers.database_url, name))
    try:
        yield store
    finally:
        await store.close()
        admin = await asyncpg.connect(servers.database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def event(
    type_name: str,
    payload: Any,
    minute: int,
    *,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> NewEvent:
    raw = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
    return NewEvent(
        type=type_name,
        schema_version=1,
        payload=raw,
        recorded_at=BASE + timedelta(minutes=minute, microseconds=minute * 1001),
        correlation_id=correlation_id,
        causation_id=causation_id,
        actor="user:ü1" if minute % 2 else None,
    )


async def build_log(store: EventStore) -> list[RecordedEvent]:
    """Three streams appended in turns, one event a minute: a received message with its
    message id, unicode text, nested and hand-formatted JSON payloads."""
    appends: list[tuple[str, list[NewEvent]]] = [
        (
            "session-a",
            [
                event(
                    "session.message_received",
                    {"text": "héllo — 你好 🌍", "user": {"id": "u1", "tags": ["a", "b"]}},
                    0,
                    correlation_id="msg-1",
                )
            ],
        ),
        ("session-b", [event("test.said", {"text": 'quote " and \\ and \n'}, 1)]),
        (
            "session-a",
            [
                event(
                    "session.reply_sent",
                    {"blocks": [{"kind": "card", "data": {"x": [1, 2.5, {"y": None}]}}]},
                    2,
                    correlation_id="msg-1",
                    causation_id="msg-1",
                ),
                event("test.said", b'{ "spaced" :  [1, 2] ,"k":true }', 3),
            ],
        ),
        ("doc-c", [event("doc.put", {"doc": {"a": {"b": {"c": []}}}}, 4)]),
        ("session-b", [event("test.said", {"text": "second"}, 5)]),
        ("session-a", [event("test.said", {"text": "🎉"}, 6), event("test.said", {}, 7)]),
        ("doc-c", [event("doc.put", [1, "two", None], 8)]),
    ]
    versions = dict.fromkeys(STREAMS, 0)
    recorded: list[RecordedEvent] = []
    for stream_id, events in appends:
        recorded += await store.append(stream_id, versions[stream_id], events)
        versions[stream_id] += len(events)
    return recorded


async def exported(store: EventStore, **filters: Any) -> bytes:
    out = io.BytesIO()
    count = await export(store, out, **filters)
    data = out.getvalue()
    assert count == data.count(b"\n")
    return data


async def test_export_import_export_is_byte_identical(store: EventStore, other: EventStore) -> None:
    recorded = await build_log(store)
    first = await exported(store)
    lines = first.splitlines()
    assert len(lines) == len(recorded) == 9
    line = msgspec.json.decode(lines[0])
    assert list(line) == [
        "position",
        "stream_id",
        "version",
        "type",
        "schema_version",
        "recorded_at",
        "correlation_id",
        "causation_id",
        "actor",
        "payload",
        "prev_hash",
        "hash",
    ]
    assert line["recorded_at"] == "2024-05-01T12:00:00.000000+00:00"
    assert line["payload"]["text"] == "héllo — 你好 🌍"
    assert line["hash"] == recorded[0].hash.hex()
    assert b'"payload":{ "spaced" :  [1, 2] ,"k":true },' in first  # kept byte for byte

    report = await import_(other, io.BytesIO(first))
    assert report == ImportReport(read=9, inserted=9, skipped=0)
    assert await exported(other) == first
    for stream_id in STREAMS:
        assert hashing.first_broken(await other.read_stream(stream_id)) is None
    assert await other.read_stream("session-a") == await store.read_stream("session-a")

    # The imported store goes on where the original left off.
    [appended] = await other.append("doc-c", 2, [event("doc.put", {}, 9)])
    assert appended.position > recorded[-1].position


async def test_importing_the_same_file_again_skips_everything(
    store: EventStore, other: EventStore
) -> None:
    await build_log(store)
    data = await exported(store)
    seen: list[int] = []
    assert await import_(other, data.splitlines(keepends=True), progress=seen.append) == (
        ImportReport(read=9, inserted=9, skipped=0)
    )
    assert seen == [9]

    async def lines() -> AsyncIterator[bytes]:
        for line in data.splitlines():
            yield line

    assert await import_(other, lines()) == ImportReport(read=9, inserted=0, skipped=9)
    assert await import_(store, io.BytesIO(data)) == ImportReport(read=9, inserted=0, skipped=9)
    assert await exported(other) == data


async def test_session_and_time_filters_export_the_right_events(store: EventStore) -> None:
    recorded = await build_log(store)

    def keys(data: bytes) -> list[tuple[str, int]]:
        return [
            (e["stream_id"], e["version"])
            for e in (msgspec.json.decode(line) for line in data.splitlines())
        ]

    session_a = [(r.stream_id, r.version) for r in recorded if r.stream_id == "session-a"]
    assert keys(await exported(store, session="session-a")) == session_a
    assert [v for _, v in session_a] == [1, 2, 3, 4, 5]

    since, until = recorded[2].recorded_at, recorded[6].recorded_at
    window = [(r.stream_id, r.version) for r in recorded if since <= r.recorded_at < until]
    assert len(window) == 4
    assert keys(await exported(store, since=since, until=until)) == window
    assert keys(await exported(store, since=until)) == [
        (r.stream_id, r.version) for r in recorded[6:]
    ]
    naive = until.replace(tzinfo=None)  # naive times are UTC
    assert keys(await exported(store, until=naive)) == [
        (r.stream_id, r.version) for r in recorded[:6]
    ]
    assert keys(await exported(store, session="session-b", since=since)) == [("session-b", 2)]
    assert await exported(store, session="nobody") == b""


async def test_a_tampered_payload_is_refused_naming_its_line(
    store: EventStore, other: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await build_log(store)
    lines = (await exported(store)).splitlines(keepends=True)
    assert b"second" in lines[5]
    tampered = [*lines[:5], lines[5].replace(b"second", b"SECOND"), *lines[6:]]
    monkeypatch.setattr(transfer, "IMPORT_BATCH", 3)
    with pytest.raises(TransferError) as caught:
        await import_(other, tampered)
    assert caught.value.line == 6
    assert str(caught.value).startswith("line 6: stream session-b version 2: the hash")
    # Lines 1-3 were one batch and are in; line 6's batch (lines 4-6) wrote nothing.
    assert await other.last_position() == 3

    # Running the import again with the good file finishes it.
    assert await import_(other, lines) == ImportReport(read=9, inserted=6, skipped=3)
    assert await exported(other) == b"".join(lines)


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (b"garbage\n", "not an exported event: JSON is malformed"),
        (b'{"position": 3}\n', "not an exported event: Object missing required field"),
        (b"[1, 2]\n", "not an exported event: Expected `object`, got `array`"),
    ],
)
async def test_a_malformed_line_is_refused_with_its_number(
    store: EventStore, other: EventStore, bad: bytes, expected: str
) -> None:
    await build_log(store)
    lines = (await exported(store)).splitlines(keepends=True)
    with pytest.raises(TransferError) as caught:
        await import_(other, [*lines[:2], bad, *lines[3:]])
    assert caught.value.line == 3
    assert str(caught.value).startswith(f"line 3: {expected}")
    assert await other.last_position() == 0


async def test_unknown_fields_and_bad_hashes_are_refused(
    store: EventStore, other: EventStore
) -> None:
    await build_log(store)
    lines = (await exported(store)).splitlines()
    extra = lines[0][:-1] + b',"extra":1}'
    short = lines[0].replace(b'"hash":"', b'"hash":"zz')[:-4] + b'"}'
    for bad, reason in ((extra, "unknown field"), (short, "non-hexadecimal")):
        with pytest.raises(TransferError, match=reason) as caught:
            await import_(other, [bad, *lines[1:]])
        assert caught.value.line == 1


async def test_a_missing_event_breaks_its_streams_chain(
    store: EventStore, other: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await build_log(store)
    lines = (await exported(store)).splitlines()
    without = [*lines[:2], *lines[3:]]  # session-a version 2 left out
    with pytest.raises(TransferError, match="version 3 comes right after version 1") as caught:
        await import_(other, without)
    assert caught.value.line == 3
    monkeypatch.setattr(transfer, "IMPORT_BATCH", 1)  # each line checked against the store
    with pytest.raises(
        TransferError, match="version 3 follows version 2, which is not stored"
    ) as caught:
        await import_(other, without)
    assert caught.value.line == 3
    assert await other.last_position() == 2  # the two lines before it, one batch each


async def test_a_different_log_in_the_store_is_refused(
    store: EventStore, other: EventStore
) -> None:
    await build_log(store)
    data = await exported(store)
    await other.append("elsewhere", 0, [event("test.said", {"text": "mine"}, 0)])
    with pytest.raises(TransferError, match="store is not empty") as caught:
        await import_(other, io.BytesIO(data))
    assert caught.value.line == 1
    assert "Import loads into an empty store, idempotently" in str(caught.value)
    assert await other.last_position() == 1


async def test_the_same_stream_version_with_another_hash_is_a_conflict(
    store: EventStore, other: EventStore
) -> None:
    await build_log(store)
    data = await exported(store)
    await other.append("session-a", 0, [event("test.said", {"text": "not the same"}, 0)])
    with pytest.raises(TransferError, match="already stored with a different hash") as caught:
        await import_(other, io.BytesIO(data))
    assert caught.value.line == 1
    assert "stream session-a version 1" in str(caught.value)
    assert await other.last_position() == 1


@pytest.mark.parametrize("payload", [b"not json", b'{"a": 1} ', b"{}{}"])
async def test_a_payload_that_is_not_one_json_value_is_not_exported(
    store: EventStore, payload: bytes
) -> None:
    await build_log(store)
    await store.append("odd", 0, [event("test.raw", payload, 9)])
    out = io.BytesIO()
    with pytest.raises(TransferError, match="position 10 \\(stream odd version 1\\)"):
        await export(store, out)


async def test_export_and_import_commands(
    store: EventStore, servers: Endpoints, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await build_log(store)

    def turnlog(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "turnlog", *args],
            env=env, capture_output=True, timeout=120, check=False,
        )  # fmt: skip

    first = turnlog(cli_env, "export")
    assert first.returncode == 0, first.stderr
    assert first.stdout == await exported(store)
    dump = tmp_path / "log.jsonl"
    dump.write_bytes(first.stdout)

    name = f"turnlog_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(servers.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        there = dict(cli_env, TURNLOG_DATABASE_URL=with_database(servers.database_url, name))
        loaded = turnlog(there, "import", str(dump))
        assert loaded.returncode == 0, loaded.stderr
        assert b"inserted" in loaded.stdout
        again = turnlog(there, "import", str(dump))
        assert b" 0 inserted" in again.stdout
        assert turnlog(there, "export").stdout == first.stdout

        dump.write_bytes(first.stdout.replace(b'"version":2', b'"version":7', 1))
        tampered = turnlog(there, "import", str(dump))
        line = next(
            n for n, text in enumerate(first.stdout.splitlines(), 1) if b'"version":2' in text
        )
        assert tampered.returncode == 1
        assert tampered.stderr.startswith(f"turnlog: line {line}: ".encode())
        assert b"Traceback" not in tampered.stderr
        missing = turnlog(there, "import", str(tmp_path / "nope.jsonl"))
        assert missing.returncode == 1 and b"No such file" in missing.stderr
    finally:
        admin = await asyncpg.connect(servers.database_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
