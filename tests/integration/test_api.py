"""The query API on real servers: projections of real turns served over HTTP (a real
uvicorn on a free port) and NATS request/reply, who may see what, JSON errors, and the
OpenAPI document exercised with schemathesis."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.configuration import set_hypothesis_home_dir

import turnlog
from tests.helpers import inbound as said
from turnlog.projections.catalog import PROJECTIONS
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.http.api import http_app, serve_http
from turnlog.services.adapters.nats.queries import QueryResponder
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.projector.runner import Projector
from turnlog.services.adapters.postgres.queries import QueryService
from turnlog.services.app.access import Keys, parse_keys
from turnlog.services.app.sessions.outbound import NoDelivery
from turnlog.services.bootstrap.wiring import Wiring

ALICE = turnlog.UserInfo(id="alice", email="alice@example.com", org_id="acme")
BOB = turnlog.UserInfo(id="bob")
READ = "read-key-0123456789"
ADMIN = "admin-key-0123456789"
ALICE_KEY = "alice-key-0123456789"
KEYS = f"{READ}:read,{ADMIN}:admin,{ALICE_KEY}:read:user=alice"


def demo_app() -> turnlog.App:
    app = turnlog.App("demo")
    app.collection("notes", scope="user")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        await session.notify("working")
        count = session.data.get("count", 0) + 1
        session.data["count"] = count
        session.data["last"] = msg.text
        await session.show(turnlog.Block("card", {"n": count}, id="status"))
        if count == 1:
            await session.show(turnlog.Block("card", {"hello": True}, id="welcome"))
        await session.db.notes.insert_one(
            {"_id": f"{session.user.id}-{count}", "text": msg.text, "tag": "shop", "n": count}
        )
        await session.reply(f"#{count}: {msg.text}")

    return app


def other_app() -> turnlog.App:
    app = turnlog.App("other")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        await session.reply(msg.text.upper())

    return app


@dataclass
class World:
    http: httpx.AsyncClient
    base_url: str
    service: QueryService
    keys: Keys
    alice: str  # demo, channel test, three turns
    bob: str  # demo, channel test, one turn
    alice_other: str  # other, channel web, one turn

    async def get(self, path: str, key: str | None = READ, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return await self.http.get(path, params=params, headers=headers)

    async def ok(self, path: str, key: str | None = READ, **params: Any) -> Any:
        response = await self.get(path, key, **params)
        assert response.status_code == 200, response.text
        return response.json()

    async def find(self, body: Any, key: str = READ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"}
        if isinstance(body, bytes):
            return await self.http.post("/v1/collections/find", content=body, headers=headers)
        return await self.http.post("/v1/collections/find", json=body, headers=headers)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        async with asyncio.timeout(10):
            await task


@pytest.fixture
async def world(store: EventStore) -> AsyncIterator[World]:
    projector = Projector(store, list(PROJECTIONS.values()))
    projecting = asyncio.create_task(projector.run())
    demo = Wiring.postgres(store).host(demo_app(), NoDelivery())
    other = Wiring.postgres(store).host(other_app(), NoDelivery())
    serving: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(10):
            await projector.ready.wait()
        first = await demo.handle(said("hi", ALICE))
        await demo.handle(said("again", ALICE, first.session_id))
        await demo.handle(said("milk", ALICE, first.session_id))
        bob = await demo.handle(said("hello", BOB))
        elsewhere = await other.handle(said("psst", ALICE, channel="web"))
        await projector.caught_up()

        service = QueryService(store.pool)
        keys = Keys(parse_keys(KEYS))
        ready = asyncio.Event()
        port = free_port()
        serving = asyncio.create_task(serve_http(http_app(service, keys), "127.0.0.1", port, ready))
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait([serving, waiting], timeout=10, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if serving.done():
            serving.result()
        assert ready.is_set(), "the HTTP server did not start"
        base_url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            yield World(
                client,
                base_url,
                service,
                keys,
                str(first.session_id),
                str(bob.session_id),
                str(elsewhere.session_id),
            )
    finally:
        if serving is not None:
            await stop(serving)
        await demo.stop()
        await other.stop()
        await stop(projecting)


# -- routes ------------------------------------------------------------------------------


async def test_sessions_list_and_its_filters(world: World) -> None:
    everything = await world.ok("/v1/sessions")
    ids = [s["session_id"] for s in everything["items"]]
    assert sorted(ids) == sorted([world.alice, world.bob, world.alice_other])
    assert everything.get("next_cursor") is None
    started = [s["started_at"] for s in everything["items"]]
    assert started == sorted(started, reverse=True)  # newest first
    by_id = {s["session_id"]: s for s in everything["items"]}
    mine = by_id[world.alice]
    assert (mine["app"], mine["user_id"], mine["user_email"], mine["org_id"]) == (
        "demo",
        "alice",
        "alice@example.com",
        "acme",
    )
    assert (mine["channel"], mine["message_count"], mine["reply_count"]) == ("test", 3, 3)

    async def only(**params: Any) -> list[str]:
        return [s["session_id"] for s in (await world.ok("/v1/sessions", **params))["items"]]

    assert await only(app="other") == [world.alice_other]
    assert sorted(await only(app="demo")) == sorted([world.alice, world.bob])
    assert await only(user="bob") == [world.bob]
    assert sorted(await only(user="alice")) == sorted([world.alice, world.alice_other])
    assert await only(channel="web") == [world.alice_other]
    assert await only(app="demo", user="alice", channel="test") == [world.alice]
    assert await only(app="nope") == []
    bob_started = by_id[world.bob]["started_at"]
    later = [s for s in ids if by_id[s]["started_at"] >= bob_started]
    earlier = [s for s in ids if by_id[s]["started_at"] < bob_started]
    assert await only(since=bob_started) == later and world.bob in later
    assert await only(until=bob_started) == earlier and world.alice in earlier
    assert await only(since=bob_started, until=bob_started) == []

    # one at a time, the pages are the whole
    pages, cursor = [], None
    while True:
        page = await world.ok("/v1/sessions", limit=1, **({"cursor": cursor} if cursor else {}))
        pages += [s["session_id"] for s in page["items"]]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    assert pages == ids


async def test_one_session_data_and_blocks(world: World) -> None:
    summary = await world.ok(f"/v1/sessions/{world.bob}")
    assert summary["session_id"] == world.bob
    assert (summary["user_id"], summary["app"], summary["message_count"]) == ("bob", "demo", 1)
    data = await world.ok(f"/v1/sessions/{world.alice}/data")
    assert data == {"session_id": world.alice, "data": {"count": 3, "last": "milk"}}
    blocks = (await world.ok(f"/v1/sessions/{world.alice}/blocks"))["items"]
    assert [(b["block_id"], b["block_type"], b["payload"]) for b in blocks] == [
        ("status", "card", {"n": 3}),
        ("welcome", "card", {"hello": True}),
    ]
    missing = await world.get(f"/v1/sessions/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


async def test_state_as_of_a_version_or_a_time(world: World) -> None:
    latest = await world.ok(f"/v1/sessions/{world.alice}/state")
    assert latest["data"] == {"count": 3, "last": "milk"}
    events = (await world.ok(f"/v1/sessions/{world.alice}/events", limit=500))["items"]
    first_turn = next(e["version"] for e in events if e["type"] == "session.turn_completed")
    early = await world.ok(f"/v1/sessions/{world.alice}/state", as_of_version=first_turn)
    assert early["version"] == first_turn and early["data"]["count"] == 1
    assert [m["text"] for m in early["history"] if m["kind"] == "reply"] == ["#1: hi"]
    at = next(e["recorded_at"] for e in events if e["version"] == first_turn)
    by_time = await world.ok(f"/v1/sessions/{world.alice}/state", at=at)
    assert by_time["version"] >= first_turn and by_time["data"]["count"] == 1
    naive = await world.get(f"/v1/sessions/{world.alice}/state", at="2026-01-01T00:00:00")
    assert naive.status_code == 400 and naive.json()["code"] == "invalid_request"
    hidden = await world.get(f"/v1/sessions/{world.bob}/state", ALICE_KEY)
    assert hidden.status_code == 404


async def test_history_in_order_across_pages(world: World) -> None:
    whole = (await world.ok(f"/v1/sessions/{world.alice}/history", limit=500))["items"]
    assert [(h["direction"], h["kind"], h["text"]) for h in whole] == [
        ("in", "message", "hi"),
        ("out", "notification", "working"),
        ("out", "reply", "#1: hi"),
        ("in", "message", "again"),
        ("out", "notification", "working"),
        ("out", "reply", "#2: again"),
        ("in", "message", "milk"),
        ("out", "notification", "working"),
        ("out", "reply", "#3: milk"),
    ]
    versions = [h["version"] for h in whole]
    assert versions == sorted(versions)
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 4}
        if cursor:
            params["cursor"] = cursor
        page = await world.ok(f"/v1/sessions/{world.alice}/history", **params)
        pages.append(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    assert [len(p) for p in pages] == [4, 4, 1]
    assert [h for p in pages for h in p] == whole


async def test_events_from_a_version_across_pages(world: World) -> None:
    whole = (await world.ok(f"/v1/sessions/{world.alice}/events", limit=500))["items"]
    assert [e["version"] for e in whole] == list(range(1, len(whole) + 1))
    assert all(e["actor"] and e["type"] and isinstance(e["payload"], dict) for e in whole)
    tail = [e for e in whole if e["version"] >= 3]
    got: list[dict[str, Any]] = []
    cursor, pages = None, 0
    while True:
        params: dict[str, Any] = {"from_version": 3, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = await world.ok(f"/v1/sessions/{world.alice}/events", **params)
        got += page["items"]
        pages += 1
        cursor = page.get("next_cursor")
        if not cursor:
            break
    assert pages >= 2
    assert got == tail


async def test_collection_find_and_projection_status(world: World) -> None:
    response = await world.find({"app": "demo", "collection": "notes", "filter": {"tag": "shop"}})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert sorted((d["owner"], d["document"]["_id"]) for d in items) == [
        ("alice", "alice-1"),
        ("alice", "alice-2"),
        ("alice", "alice-3"),
        ("bob", "bob-1"),
    ]
    assert all(d["scope"] == "user" for d in items)
    narrow = await world.find(
        {"app": "demo", "collection": "notes", "filter": {"n": {"$gte": 2}}, "owner": "alice"}
    )
    assert [d["document"]["text"] for d in narrow.json()["items"]] == ["again", "milk"]
    paged = await world.find({"app": "demo", "collection": "notes", "limit": 3})
    assert len(paged.json()["items"]) == 3 and paged.json()["next_cursor"]
    rest = await world.find(
        {"app": "demo", "collection": "notes", "limit": 3, "cursor": paged.json()["next_cursor"]}
    )
    assert [d["document"]["_id"] for d in rest.json()["items"]] == ["bob-1"]

    status = (await world.ok("/v1/projections"))["items"]
    assert {s["name"] for s in status} == set(PROJECTIONS)
    assert all(s["lag_events"] == 0 and s["position"] == s["last_position"] for s in status)
    health = (await world.http.get("/healthz")).json()
    assert health["ok"] is True and health["status"] == "ok" and health["failed_projections"] == []


# -- who sees what -----------------------------------------------------------------------


async def test_a_key_is_needed(world: World) -> None:
    for key in (None, "not-a-key-at-all-really"):
        response = await world.get("/v1/sessions", key)
        assert response.status_code == 401
        assert response.json()["code"] == "unauthorized"
        assert response.headers["content-type"].startswith("application/json")
    scheme = await world.http.get("/v1/sessions", headers={"Authorization": f"Basic {READ}"})
    assert scheme.status_code == 401
    find = await world.http.post("/v1/collections/find", json={"app": "demo", "collection": "x"})
    assert find.status_code == 401
    assert (await world.get("/v1/sessions", ADMIN)).status_code == 200
    assert (await world.http.get("/openapi.json")).status_code == 200


async def test_a_user_key_sees_its_user_only(world: World) -> None:
    listed = await world.ok("/v1/sessions", ALICE_KEY)
    assert sorted(s["session_id"] for s in listed["items"]) == sorted(
        [world.alice, world.alice_other]
    )
    assert (await world.ok("/v1/sessions", ALICE_KEY, user="alice"))["items"]
    asked = await world.get("/v1/sessions", ALICE_KEY, user="bob")
    assert asked.status_code == 403 and asked.json()["code"] == "forbidden"
    for path in ("", "/history", "/data", "/blocks", "/events"):
        response = await world.get(f"/v1/sessions/{world.bob}{path}", ALICE_KEY)
        assert response.status_code == 404, path
        assert response.json()["code"] == "not_found"
        assert (await world.get(f"/v1/sessions/{world.alice}{path}", ALICE_KEY)).status_code == 200
    assert (await world.get("/v1/projections", ALICE_KEY)).status_code == 403

    notes = {"app": "demo", "collection": "notes"}
    for crafted in (
        {},
        {"filter": {"$or": [{}, {"owner": "bob"}]}},
        {"filter": {"$or": [{"_id": "bob-1"}, {"_id": {"$ne": "x"}}]}},
        {"filter": {"owner": "bob"}},
        {"owner": "bob"},
        {"owner": "bob", "filter": {"$or": [{}, {}]}},
    ):
        response = await world.find({**notes, **crafted}, ALICE_KEY)
        if response.status_code == 200:
            owners = {d["owner"] for d in response.json()["items"]}
            assert owners <= {"alice"}, crafted
            assert "bob" not in response.text, crafted
        else:
            assert response.status_code == 403, (crafted, response.text)
    wide = await world.find({**notes, "filter": {"$or": [{}, {"owner": "bob"}]}}, ALICE_KEY)
    assert len(wide.json()["items"]) == 3
    everyone = await world.find({**notes, "filter": {"$or": [{}, {"owner": "bob"}]}}, READ)
    assert len(everyone.json()["items"]) == 4


# -- errors ------------------------------------------------------------------------------


async def test_errors_are_json_with_the_right_status(world: World) -> None:
    def error(response: httpx.Response, status: int, code: str) -> str:
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert set(body) == {"code", "message"} and body["code"] == code, body
        assert body["message"]
        message: str = body["message"]
        return message

    history = f"/v1/sessions/{world.alice}/history"
    error(await world.get(history, cursor="!!not-a-cursor!!"), 400, "invalid_request")
    error(await world.get(history, cursor="WyJ4Il0"), 400, "invalid_request")  # ["x"]
    error(await world.get("/v1/sessions", cursor="WzFd"), 400, "invalid_request")  # [1]
    crafted = "WyJ4IiwgInkiXQ"  # ["x", "y"]: the right shape, not a time
    error(await world.get("/v1/sessions", cursor=crafted), 400, "invalid_request")
    huge = "WzEwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDBd"  # [10**30]
    error(await world.get(history, cursor=huge), 400, "invalid_request")
    assert "limit" in error(await world.get(history, limit="many"), 400, "invalid_request")
    error(await world.get(history, limit=0), 400, "invalid_request")
    error(await world.get(history, limit=100_000), 400, "invalid_request")
    error(await world.get("/v1/sessions", since="yesterday"), 400, "invalid_request")
    events = f"/v1/sessions/{world.alice}/events"
    error(await world.get(events, from_version="x"), 400, "invalid_request")
    error(await world.get(events, from_version=2**70), 400, "invalid_request")
    error(await world.find(b"{not json"), 400, "invalid_request")
    error(await world.find(b"[]"), 400, "invalid_request")
    unknown = {"app": "demo", "collection": "notes", "colour": "red"}
    assert "colour" in error(await world.find(unknown), 400, "invalid_request")
    error(await world.find({"app": "demo"}), 400, "invalid_request")
    bad_filter = {"app": "demo", "collection": "notes", "filter": {"$where": "1"}}
    error(await world.find(bad_filter), 400, "invalid_request")
    nul = {"app": "demo", "collection": "notes\x00", "filter": {"a": "\x00"}}
    error(await world.find(nul), 400, "invalid_request")
    error(await world.get("/v1/sessions/a%00b"), 400, "invalid_request")
    error(await world.get("/v1/nothing-here"), 404, "not_found")
    error(await world.get("/openapi.json/nothing-here"), 404, "not_found")
    error(await world.http.delete("/v1/sessions"), 405, "method_not_allowed")


class BrokenPool:
    """A pool whose every query fails the way an outage or a bug would."""

    async def fetch(self, *args: Any) -> Any:
        raise RuntimeError("secret internals")

    fetchrow = fetchval = fetch


async def test_unexpected_failures_are_a_bare_500() -> None:
    service = QueryService(BrokenPool())  # type: ignore[arg-type]
    keys = Keys(parse_keys(KEYS))
    transport = httpx.ASGITransport(app=http_app(service, keys))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        response = await client.get("/v1/sessions", headers={"Authorization": f"Bearer {READ}"})
    assert response.status_code == 500
    assert response.json() == {"code": "internal", "message": "internal error"}
    responder = QueryResponder(None, "t", service, keys)  # type: ignore[arg-type]
    reply = await responder.answer("t.query.sessions.list", b'{"key": "%s"}' % READ.encode())
    assert msgspec.json.decode(reply) == {
        "error": {"code": "internal", "message": "internal error"}
    }


# -- OpenAPI, exercised ------------------------------------------------------------------


def fuzz(base_url: str, session_id: str, home: Path) -> int:
    """Run schemathesis over every operation of the served document; the number of
    requests made. Hypothesis keeps what it stores under ``home``, not in the tree."""
    set_hypothesis_home_dir(home)
    try:
        return _fuzz(base_url, session_id)
    finally:
        set_hypothesis_home_dir(None)


def _fuzz(base_url: str, session_id: str) -> int:
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.result import Ok
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=10)
    headers = {"Authorization": f"Bearer {READ}"}
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    calls = 0
    results = list(schema.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), results
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == 10
    for operation in operations:
        strategies = [operation.as_strategy(headers=headers)]
        if operation.query or operation.body:  # something to get wrong
            negative = schemathesis.GenerationMode.NEGATIVE
            strategies.append(operation.as_strategy(negative, headers=headers))
        if "{session_id}" in operation.path:
            strategies.append(
                operation.as_strategy(path_parameters={"session_id": session_id}, headers=headers)
            )
        for strategy in strategies:

            @given(case=strategy)
            @settings(
                max_examples=15,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def check(case: Any) -> None:
                nonlocal calls
                calls += 1
                response = case.call(base_url=base_url, headers=headers, timeout=10)
                case.validate_response(response, checks=checks, headers=headers)

            check()
    return calls


async def test_openapi_document_holds_and_conforms(world: World, tmp_path: Path) -> None:
    document = (await world.http.get("/openapi.json")).json()
    assert document["info"]["title"] == "turnlog query API"
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "security" not in document["paths"]["/healthz"]["get"]
    for path, item in document["paths"].items():
        for operation in item.values():
            if path != "/healthz":
                assert operation["security"] == [{"bearer": []}]
                assert {"400", "401", "403", "404"} <= set(operation["responses"])
    async with asyncio.timeout(60):
        calls = await asyncio.to_thread(fuzz, world.base_url, world.alice, tmp_path)
    assert calls > 50


# -- NATS request/reply ------------------------------------------------------------------


async def test_nats_request_reply_matches_http(
    world: World, servers: Endpoints, prefix: str
) -> None:
    nc = await nats.connect(servers.nats_url)
    responder = QueryResponder(nc, prefix, world.service, world.keys)
    answering = asyncio.create_task(responder.run())
    try:
        async with asyncio.timeout(10):
            await responder.ready.wait()

        async def ask(name: str, body: Any) -> Any:
            data = body if isinstance(body, bytes) else msgspec.json.encode(body)
            reply = await nc.request(f"{prefix}.query.{name}", data, timeout=5)
            return msgspec.json.decode(reply.data)

        async def ok(name: str, params: dict[str, Any], key: str = READ) -> Any:
            reply = await ask(name, {"key": key, "params": params})
            assert set(reply) == {"ok"}, reply
            return reply["ok"]

        assert await ok("sessions.list", {}) == await world.ok("/v1/sessions")
        assert await ok("sessions.list", {"user": "bob"}) == await world.ok(
            "/v1/sessions", user="bob"
        )
        assert await ok("sessions.list", {}, ALICE_KEY) == await world.ok("/v1/sessions", ALICE_KEY)
        history = f"/v1/sessions/{world.alice}/history"
        first = await ok("sessions.history", {"session_id": world.alice, "limit": 4})
        assert first == await world.ok(history, limit=4)
        second = {"session_id": world.alice, "limit": 4, "cursor": first["next_cursor"]}
        assert await ok("sessions.history", second) == await world.ok(
            history, limit=4, cursor=first["next_cursor"]
        )
        find = {"app": "demo", "collection": "notes", "filter": {"$or": [{}, {"owner": "bob"}]}}
        for key in (READ, ALICE_KEY):
            over_http = await world.find(find, key)
            assert await ok("collections.find", find, key) == over_http.json()
        assert await ok("sessions.get", {"session_id": world.bob}) == await world.ok(
            f"/v1/sessions/{world.bob}"
        )
        assert await ok("sessions.data", {"session_id": world.alice}) == await world.ok(
            f"/v1/sessions/{world.alice}/data"
        )
        assert await ok("sessions.blocks", {"session_id": world.alice}) == await world.ok(
            f"/v1/sessions/{world.alice}/blocks"
        )
        events = {"session_id": world.alice, "from_version": 2, "limit": 2}
        assert await ok("sessions.events", events) == await world.ok(
            f"/v1/sessions/{world.alice}/events", from_version=2, limit=2
        )
        assert await ok("projections.status", {}) == await world.ok("/v1/projections")
        state = {"session_id": world.alice, "as_of_version": 5}
        assert await ok("sessions.state", state) == await world.ok(
            f"/v1/sessions/{world.alice}/state", as_of_version=5
        )

        def code(reply: Any) -> str:
            assert set(reply) == {"error"} and set(reply["error"]) == {"code", "message"}
            value: str = reply["error"]["code"]
            return value

        assert code(await ask("sessions.list", {"key": "wrong", "params": {}})) == "unauthorized"
        assert code(await ask("sessions.list", {"params": {}})) == "unauthorized"
        assert code(await ask("sessions.list", b"\xff\x00garbage")) == "invalid_request"
        assert code(await ask("sessions.list", b"")) == "invalid_request"
        assert code(await ask("sessions.list", [1, 2])) == "invalid_request"
        assert code(await ask("sessions.nothing", {"key": READ})) == "not_found"
        assert code(await ask("sessions.list", {"key": READ, "extra": 1})) == "invalid_request"
        bad = {"key": READ, "params": {"limit": "many"}}
        assert code(await ask("sessions.list", bad)) == "invalid_request"
        bad = {"key": READ, "params": {"session_id": world.alice, "cursor": "!!"}}
        assert code(await ask("sessions.history", bad)) == "invalid_request"
        bad = {"key": ALICE_KEY, "params": {"session_id": world.bob}}
        assert code(await ask("sessions.get", bad)) == "not_found"
        bad = {"key": ALICE_KEY, "params": {"app": "demo", "collection": "notes", "owner": "bob"}}
        assert code(await ask("collections.find", bad)) == "forbidden"
        bad = {"key": READ, "params": {"session_id": "a\x00b"}}
        assert code(await ask("sessions.get", bad)) == "invalid_request"
        # still answering after all that
        assert await ok("sessions.get", {"session_id": world.bob})
    finally:
        await stop(answering)
        await nc.close()
    assert answering.done()
