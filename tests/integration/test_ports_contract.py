"""The ports' contract, written once and run against each adapter: memory (what
``turnlog.testing`` runs on) and PostgreSQL. Same inputs, same outcomes, same hashes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

import turnlog
from tests.conftest import fresh_database
from tests.helpers import inbound, said
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.app.collections import DuplicateKey, Place
from turnlog.services.app.log.errors import ConcurrencyConflict, DuplicateMessage
from turnlog.services.app.log.records import NewEvent, Snapshot
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.sessions.outbound import Collector
from turnlog.services.app.values import UserInfo
from turnlog.services.bootstrap.wiring import Wiring

AT = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
# the hash of "c" after "a" and "b" in stream "s-1": the same bytes on every adapter
CHAIN_TIP = "e575282a28ee4030aa1ad259a1e54e1a63756fd15c94a8a82a6bd470ac1c5dec"


@pytest.fixture(params=["memory", "postgres"])
async def wiring(request: pytest.FixtureRequest) -> AsyncIterator[Wiring]:
    if request.param == "memory":
        yield Wiring.memory(lambda: AT)
    else:
        servers: Endpoints = request.getfixturevalue("servers")
        async with fresh_database(servers) as url:
            store = await EventStore.connect(url, min_size=1, max_size=4)
            try:
                yield Wiring.postgres(store, clock=lambda: AT)
            finally:
                await store.close()


def fixed(text: str, message_id: str | None = None) -> NewEvent:
    event = said(text)
    kind = "session.message_received" if message_id else event.type
    return msgspec.structs.replace(
        event, type=kind, recorded_at=AT, correlation_id=message_id or event.correlation_id
    )


# -- the event log ----------------------------------------------------------------------


async def test_appends_are_read_back_in_order_with_the_same_hash_chain(wiring: Wiring) -> None:
    log = wiring.log
    first = await log.append("s-1", 0, [fixed("a"), fixed("b")])
    await log.append("other", 0, [fixed("x")])
    second = await log.append("s-1", 2, [fixed("c")])
    read = await log.read_stream("s-1")
    assert [r.version for r in read] == [1, 2, 3]
    assert read == first + second
    assert [r.position for r in read] == sorted(r.position for r in read)
    assert read[0].prev_hash == bytes(32) and read[1].prev_hash == read[0].hash
    # the chain depends only on what was appended: these are the bytes PostgreSQL holds too
    assert read[2].hash.hex() == CHAIN_TIP
    assert [r.version for r in await log.read_stream("s-1", after_version=1, to_version=2)] == [2]
    assert await log.last_position() >= 4


async def test_an_append_at_a_stale_version_conflicts_and_writes_nothing(wiring: Wiring) -> None:
    log = wiring.log
    await log.append("s-1", 0, [fixed("a")])
    with pytest.raises(ConcurrencyConflict) as raised:
        await log.append("s-1", 0, [fixed("b")])
    assert (raised.value.expected, raised.value.actual) == (0, 1)
    with pytest.raises(ConcurrencyConflict):
        await log.append("s-1", 5, [fixed("b")])
    assert len(await log.read_stream("s-1")) == 1


async def test_a_message_is_received_once_across_streams(wiring: Wiring) -> None:
    log = wiring.log
    await log.append("s-1", 0, [fixed("hi", message_id="m-1")])
    with pytest.raises(DuplicateMessage):
        await log.append("s-2", 0, [fixed("hi", message_id="m-1")])
    assert await log.read_stream("s-2") == []


async def test_a_transaction_lands_whole_or_not_at_all(wiring: Wiring) -> None:
    log = wiring.log
    async with log.transaction() as tx:
        await log.append("t-1", 0, [fixed("a")], connection=tx)
        await log.append("t-2", 0, [fixed("b")], connection=tx)
        await log.append("t-1", 1, [fixed("c")], connection=tx)
    log.announce()
    assert [len(await log.read_stream(s)) for s in ("t-1", "t-2")] == [2, 1]
    with pytest.raises(RuntimeError, match="changed my mind"):
        async with log.transaction() as tx:
            await log.append("t-3", 0, [fixed("a")], connection=tx)
            raise RuntimeError("changed my mind")
    assert await log.read_stream("t-3") == []


async def test_the_newest_snapshot_is_kept(wiring: Wiring) -> None:
    log = wiring.log
    assert await log.load_snapshot("s-1") is None
    for version in (3, 7, 5):
        await log.save_snapshot(
            Snapshot(stream_id="s-1", version=version, type="t", schema_version=1,
                     state=b'{"v":%d}' % version, hash=bytes(32))
        )  # fmt: skip
    kept = await log.load_snapshot("s-1")
    assert kept is not None and kept.version == 7 and kept.state == b'{"v":7}'


async def test_sealed_fields_open_until_the_user_is_erased(wiring: Wiring) -> None:
    log, ring = wiring.log, wiring.log.keyring
    event = NewEvent(
        type="session.data_set", schema_version=1, recorded_at=AT,
        payload=msgspec.json.encode({"key": "k", "value": "secret"}),
    )  # fmt: skip
    async with log.transaction() as tx:
        sealed = await ring.seal("alice", [event], holding=tx)
        await log.append("s-1", 0, sealed, connection=tx)
    assert b"secret" not in sealed[0].payload
    opened = await ring.unseal(await log.read_stream("s-1"))
    assert msgspec.json.decode(opened[0].payload)["value"] == "secret"
    async with log.transaction() as tx:
        assert await ring.erase(tx, "alice") == [1]
    erased = await ring.unseal(await log.read_stream("s-1"))
    assert msgspec.json.decode(erased[0].payload)["value"] != "secret"


# -- claims -----------------------------------------------------------------------------


async def test_a_claim_is_held_by_one_until_released(wiring: Wiring) -> None:
    key = (7, uuid.uuid4().int % 2**31)
    first = await wiring.claims.try_claim(key)
    assert first is not None and await first.alive()
    assert await wiring.claims.try_claim(key) is None
    await first.release()
    again = await wiring.claims.try_claim(key)
    assert again is not None
    await again.release()


async def test_claims_held_in_a_space_are_listed_until_released(wiring: Wiring) -> None:
    space = uuid.uuid4().int % 2**31 - 2**30
    assert await wiring.claims.held(space) == set()
    claims = [await wiring.claims.try_claim((space, n)) for n in (-5, 0, 2**31 - 1)]
    other = await wiring.claims.try_claim((space + 1, 3))
    assert await wiring.claims.held(space) == {-5, 0, 2**31 - 1}
    for claim in [*claims, other]:
        assert claim is not None
        await claim.release()
    assert await wiring.claims.held(space) == set()


# -- documents --------------------------------------------------------------------------

ALICE, BOB = Place("app", "notes", "user", "alice"), Place("app", "notes", "user", "bob")


async def test_documents_are_written_as_events_and_read_by_place(wiring: Wiring) -> None:
    docs, meta = wiring.documents, Metadata(correlation_id="m-1", actor="app:app")
    await docs.prepare("app", "notes", [["n"]])
    ids = await docs.insert(ALICE, [{"_id": "a", "n": 2}, {"_id": "b", "n": 1, "tag": "x"}], meta)
    await docs.insert(BOB, [{"_id": "a", "n": 9}], meta, user="bob")
    assert ids == ["a", "b"]
    with pytest.raises(DuplicateKey):
        await docs.insert(ALICE, [{"_id": "a"}], meta)
    assert await docs.count(ALICE) == 2 and await docs.count(BOB) == 1
    assert [d["_id"] for d in await docs.find(ALICE, sort="n")] == ["b", "a"]
    assert [d["_id"] for d in await docs.find(ALICE, sort=[("n", -1)], limit=1)] == ["a"]
    assert await docs.find(ALICE, {"tag": "x"}) == [{"_id": "b", "n": 1, "tag": "x"}]
    assert await docs.update_one(ALICE, {"_id": "a"}, {"$inc": {"n": 5}}, meta) == 1
    assert await docs.find(ALICE, {"n": {"$gt": 3}}) == [{"_id": "a", "n": 7}]
    assert await docs.delete(ALICE, {}, meta, many=True) == 2
    assert await docs.count(ALICE) == 0 and await docs.count(BOB) == 1


async def test_sorts_follow_jsonb_order_with_missing_values_first(wiring: Wiring) -> None:
    docs, meta = wiring.documents, Metadata(actor="app:app")
    await docs.prepare("app", "notes", [])
    values: list[Any] = [3, "b", None, True, [1], {"k": 1}, 2.5, "a", False, [0, 0]]
    await docs.insert(ALICE, [{"_id": f"d{i}", "v": v} for i, v in enumerate(values)], meta)
    await docs.insert(ALICE, [{"_id": "none"}], meta)
    up = [d.get("v", "-") for d in await docs.find(ALICE, sort="v")]
    assert up == ["-", None, "a", "b", 2.5, 3, False, True, [1], [0, 0], {"k": 1}]
    down = [d.get("v", "-") for d in await docs.find(ALICE, sort={"v": -1})]
    assert down == list(reversed(up))


# -- a whole turn -----------------------------------------------------------------------


def notes_app() -> turnlog.App:
    app = turnlog.App("contract")
    notes = app.collection("notes", scope="user")

    @app.message()
    async def on_message(session: turnlog.Session, msg: turnlog.Message) -> None:
        session.data["seen"] = session.data.get("seen", 0) + 1
        await notes.insert_one({"_id": f"n{session.data['seen']}", "text": msg.text})
        await session.notify("saving")
        await session.reply(f"{await notes.count({})} notes at {session.now():%H:%M}")

    return app


async def test_a_turn_records_the_same_events_on_every_adapter(wiring: Wiring) -> None:
    delivered = Collector()
    host = wiring.host(notes_app(), delivered)
    user = UserInfo(id="alice")
    sid = uuid.UUID(int=1)
    try:
        first = await host.handle(inbound("one", user, sid, message_id="m-1"))
        second = await host.handle(inbound("two", user, sid, message_id="m-2"))
    finally:
        await host.stop()
    assert (first.reply, second.reply) == ("1 notes at 03:04", "2 notes at 03:04")
    records = await wiring.log.keyring.unseal(await wiring.log.read_stream(str(sid)))
    assert [(r.type, r.correlation_id, r.recorded_at) for r in records] == [
        ("session.started", "m-1", AT),
        ("session.message_received", "m-1", AT),
        ("session.notified", "m-1", AT),
        ("session.effect_recorded", "m-1", AT),
        ("session.reply_sent", "m-1", AT),
        ("session.data_set", "m-1", AT),
        ("session.turn_completed", "m-1", AT),
        ("session.message_received", "m-2", AT),
        ("session.notified", "m-2", AT),
        ("session.effect_recorded", "m-2", AT),
        ("session.reply_sent", "m-2", AT),
        ("session.data_set", "m-2", AT),
        ("session.turn_completed", "m-2", AT),
    ]
    assert [type(i).__name__ for i in delivered.of(sid)] == ["Notification", "Reply"] * 2
