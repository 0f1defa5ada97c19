"""Collections on a real PostgreSQL: handlers read their own writes, every write is an
event, the view rebuilds from those events, and no scope reaches another's documents."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

import turnlog
from tests.helpers import inbound as said
from turnlog.projections.catalog import PROJECTIONS
from turnlog.services.adapters.postgres.documents import DuplicateKey
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.projector.rebuild import rebuild
from turnlog.services.app.sessions.host import SessionHost
from turnlog.services.app.sessions.outbound import Collector
from turnlog.services.bootstrap.wiring import Wiring
from turnlog.services.sdk.collections import CollectionError

ALICE = turnlog.UserInfo(id="alice", org_id="acme")
ALBERT = turnlog.UserInfo(id="albert", org_id="acme")
BOB = turnlog.UserInfo(id="bob")


Script = dict[str, Any]


def scripted_app() -> tuple[turnlog.App, Script]:
    """An app whose handler runs ``script[text]`` (an async function of the session) and
    replies with its result."""
    app = turnlog.App("docs")
    app.collection("notes", scope="user", indexes=["tag", ["tag", "n"]])
    app.collection("team", scope="owner")
    app.collection("shared", scope="app")
    app.collection("scratch", scope="session")
    script: Script = {}

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        result = await script[msg.text](session)
        await session.reply(repr(result))

    return app, script


@pytest.fixture
async def host(store: EventStore) -> AsyncIterator[tuple[SessionHost, Script]]:
    app, script = scripted_app()
    host = Wiring.postgres(store).host(app, Collector())
    yield host, script
    await host.stop()


async def run(
    host: SessionHost, user: turnlog.UserInfo, text: str, sid: uuid.UUID | None = None
) -> tuple[str, uuid.UUID]:
    result = await host.handle(said(text, user, sid))
    assert result.outcome == "ok", result.error_message
    return result.replies[0], result.session_id


async def test_a_handler_reads_its_own_writes(host: tuple[SessionHost, Script]) -> None:
    h, script = host

    async def write_then_read(s: turnlog.Session) -> Any:
        await s.db.notes.insert_one({"_id": "n1", "text": "milk", "tag": "shop"})
        await s.db.notes.insert_many(
            [{"text": "eggs", "tag": "shop"}, {"text": "call", "tag": "todo"}]
        )
        found = await s.db.notes.find_one({"_id": "n1"})
        return (await s.db.notes.count({"tag": "shop"}), sorted(found.items()))

    script["go"] = write_then_read
    reply, _ = await run(h, ALICE, "go")
    assert reply == repr((2, [("_id", "n1"), ("tag", "shop"), ("text", "milk")]))


async def test_every_write_is_an_event_with_actor_and_correlation(
    host: tuple[SessionHost, Script], store: EventStore
) -> None:
    h, script = host

    async def write(s: turnlog.Session) -> Any:
        await s.db.notes.insert_one({"_id": "n1", "n": 1})
        await s.db.notes.update_one({"_id": "n1"}, {"$inc": {"n": 2}, "$push": {"log": "x"}})
        await s.db.notes.update_one({"_id": "n1"}, {"done": True})
        return await s.db.notes.delete_one({"_id": "n1"})

    script["go"] = write
    message_id = uuid.uuid4().hex
    result = await h.handle(said("go", ALICE, message_id=message_id))
    assert result.replies == ("1",)
    rows = await store.pool.fetch(
        "SELECT stream_id, version, type, actor, correlation_id, payload FROM turnlog_events"
        " WHERE type LIKE 'document.%' ORDER BY position"
    )
    assert [(r["version"], r["type"]) for r in rows] == [
        (1, "document.inserted"),
        (2, "document.updated"),
        (3, "document.updated"),
        (4, "document.deleted"),
    ]
    assert len({r["stream_id"] for r in rows}) == 1
    assert {r["actor"] for r in rows} == {"app:docs"}
    assert {r["correlation_id"] for r in rows} == {message_id}
    assert rows[1]["payload"].startswith(b'{"_sealed":{"user":"alice","key":1,')
    stream = await store.read_stream(rows[1]["stream_id"])
    updated = msgspec.json.decode((await store.keyring.unseal(stream))[1].payload)
    assert updated["document"] == {"_id": "n1", "n": 3, "log": ["x"]}
    assert updated["changes"] == {"$inc": {"n": 2}, "$push": {"log": "x"}}


async def test_user_scope_isolates_users_whatever_the_filter_or_document(
    host: tuple[SessionHost, Script], store: EventStore
) -> None:
    h, script = host

    async def alice_writes(s: turnlog.Session) -> Any:
        # document content naming another owner or app changes nothing
        return await s.db.notes.insert_many(
            [{"_id": "a1", "owner": "bob", "app": "other"}, {"_id": "shared", "v": "alice"}]
        )

    async def bob_writes(s: turnlog.Session) -> Any:
        return await s.db.notes.insert_one({"_id": "shared", "v": "bob"})  # same _id: fine

    async def bob_reaches(s: turnlog.Session) -> Any:
        crafted = {
            "$or": [{}, {"owner": "alice"}, {"_id": {"$exists": True}}, {"_id": {"$ne": None}}]
        }
        seen = await s.db.notes.find(crafted)
        changed = await s.db.notes.update_one({"_id": "a1"}, {"$set": {"v": "hacked"}})
        deleted_none = await s.db.notes.delete_many({"_id": "a1"})
        deleted_all = await s.db.notes.delete_many({})
        return ([d["_id"] for d in seen], changed, deleted_none, deleted_all)

    async def alice_reads(s: turnlog.Session) -> Any:
        return sorted((d["_id"], d.get("v")) for d in await s.db.notes.find())

    script.update(aw=alice_writes, bw=bob_writes, br=bob_reaches, ar=alice_reads)
    await run(h, ALICE, "aw")
    await run(h, BOB, "bw")
    reply, _ = await run(h, BOB, "br")
    assert reply == repr((["shared"], 0, 0, 1))
    reply, _ = await run(h, ALICE, "ar")
    assert reply == repr([("a1", None), ("shared", "alice")])


async def test_owner_app_and_session_scopes(host: tuple[SessionHost, Script]) -> None:
    h, script = host

    async def write(s: turnlog.Session) -> Any:
        await s.db.team.insert_one({"by": s.user.id})
        await s.db.shared.insert_one({"by": s.user.id})
        await s.db.scratch.insert_one({"by": s.user.id})
        return None

    async def read(s: turnlog.Session) -> Any:
        scopes = (s.db.team, s.db.shared, s.db.scratch)
        return tuple([sorted(d["by"] for d in await c.find()) for c in scopes])

    script.update(w=write, r=read)
    _, alice_session = await run(h, ALICE, "w")
    await run(h, ALBERT, "w")
    await run(h, BOB, "w")
    reply, _ = await run(h, ALICE, "r", alice_session)
    assert reply == repr((["albert", "alice"], ["albert", "alice", "bob"], ["alice"]))
    reply, _ = await run(h, BOB, "r")  # a new session of bob's: its scratch is empty
    assert reply == repr((["bob"], ["albert", "alice", "bob"], []))


async def test_duplicate_ids_are_refused_and_deleted_ids_reusable(
    host: tuple[SessionHost, Script],
) -> None:
    h, script = host

    async def dup(s: turnlog.Session) -> Any:
        await s.db.notes.insert_one({"_id": "x", "v": 1})
        try:
            await s.db.notes.insert_one({"_id": "x", "v": 2})
        except DuplicateKey as e:
            refused = str(e)
        await s.db.notes.delete_one({"_id": "x"})
        await s.db.notes.insert_one({"_id": "x", "v": 3})
        return refused, [sorted(d.items()) for d in await s.db.notes.find()]

    script["go"] = dup
    reply, _ = await run(h, ALICE, "go")
    assert "already has a document with _id 'x'" in reply
    assert "[[('_id', 'x'), ('v', 3)]]" in reply


async def test_find_sorts_limits_and_skips(host: tuple[SessionHost, Script]) -> None:
    h, script = host

    async def go(s: turnlog.Session) -> Any:
        await s.db.notes.insert_many([{"_id": f"d{i}", "n": i % 3, "tag": "t"} for i in range(7)])
        page = await s.db.notes.find({"n": {"$gte": 1}}, sort=[("n", -1)], limit=3, skip=1)
        return [d["_id"] for d in page]

    script["go"] = go
    reply, _ = await run(h, ALICE, "go")
    # n=2: d2, d5; n=1: d1, d4, ties by _id; skip 1, take 3
    assert reply == repr(["d5", "d1", "d4"])


async def test_a_user_scoped_collection_needs_a_session(host: tuple[SessionHost, Script]) -> None:
    h, _ = host
    with pytest.raises(CollectionError, match="user-scoped"):
        await h.app.collections["notes"].find()


async def test_collections_view_rebuilds_from_events_with_declared_indexes(
    host: tuple[SessionHost, Script], store: EventStore
) -> None:
    h, script = host

    async def churn(s: turnlog.Session) -> Any:
        ids = await s.db.notes.insert_many([{"tag": "a", "n": i} for i in range(20)])
        for i in ids[:10]:
            await s.db.notes.update_one({"_id": i}, {"$inc": {"n": 100}})
        await s.db.notes.delete_many({"n": {"$lt": 5}})
        return await s.db.notes.count()

    script["go"] = churn
    await run(h, ALICE, "go")
    await run(h, BOB, "go")

    async def checksum() -> str:
        return await store.pool.fetchval(
            "SELECT md5(string_agg(t::text, '|' ORDER BY stream_id)) FROM turnlog_documents t"
        )

    async def index_names() -> set[str]:
        rows = await store.pool.fetch(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'turnlog_documents'"
        )
        return {r[0] for r in rows}

    live, indexes = await checksum(), await index_names()
    assert len(indexes) == 4  # primary key, unique _id per scope, two declared
    await rebuild(store, [PROJECTIONS["collections"]])
    assert await checksum() == live
    assert await index_names() == indexes
