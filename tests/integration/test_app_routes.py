"""An app's data and endpoint handlers over HTTP (a real uvicorn on a free port, beside
the query API): who may call them, parameters converted to their types, collections
scoped to the caller, writes on record as the caller's, JSON errors; and served by
``turnlog run``."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

import turnlog
from tests.conftest import API_KEY
from tests.helpers import inbound as said
from turnlog.projections.catalog import PROJECTIONS
from turnlog.services.adapters.embedded.processes import free_port
from turnlog.services.adapters.http.api import http_app, serve_http
from turnlog.services.adapters.http.app_routes import app_routes
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.projector.runner import Projector
from turnlog.services.adapters.postgres.queries import QueryService
from turnlog.services.app.access import Keys, parse_keys
from turnlog.services.app.sessions.host import SessionHost
from turnlog.services.app.sessions.outbound import NoDelivery
from turnlog.services.bootstrap.wiring import Wiring

ALICE = turnlog.UserInfo(id="alice", email="alice@example.com", org_id="acme")
ALBERT = turnlog.UserInfo(id="albert", org_id="acme")
BOB = turnlog.UserInfo(id="bob")
ALICE_KEY = "alice-key-0123456789"
ALBERT_KEY = "albert-key-0123456789"
BOB_KEY = "bob-key-0123456789"
READ = "read-key-0123456789"
ADMIN = "admin-key-0123456789"
KEYS = (
    f"{ALICE_KEY}:read:user=alice,{ALBERT_KEY}:read:user=albert,{BOB_KEY}:read:user=bob,"
    f"{READ}:read,{ADMIN}:admin"
)


class Card(msgspec.Struct, frozen=True, kw_only=True):
    title: str
    points: int = 1


def web_app() -> turnlog.App:
    app = turnlog.App("web")
    notes = app.collection("notes", scope="user")
    app.collection("team", scope="owner")
    board = app.collection("board", scope="app")
    app.collection("scratch", scope="session")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        await notes.insert_one({"text": msg.text})
        await session.db.team.insert_one({"text": msg.text, "by": session.user.id})
        await session.reply("noted")

    @app.data("me", access="authenticated")
    async def me(ctx: turnlog.RequestContext, limit: int = 10, verbose: bool = False) -> Any:
        assert ctx.user is not None
        return {
            "user": ctx.user.id,
            "email": ctx.user.email,
            "authenticated": ctx.authenticated,
            "limit": limit,
            "verbose": verbose,
        }

    @app.data("hello")
    def hello(ctx: turnlog.RequestContext, name: str = "world") -> Any:
        return {
            "authenticated": ctx.authenticated,
            "user": ctx.user.id if ctx.user else None,
            "greeting": f"hello {name}",
            "integrations": dict(ctx.integrations),
        }

    @app.data("notes", access="authenticated")
    async def my_notes() -> Any:
        return [n["text"] for n in await notes.find(sort="text")]

    @app.data("team", access="authenticated")
    async def team_notes(ctx: turnlog.RequestContext) -> Any:
        return [(n["by"], n["text"]) for n in await ctx.db.team.find(sort="text")]

    @app.data("peek")
    async def peek() -> int:
        return await notes.count()

    @app.data("scratch")
    async def scratch(ctx: turnlog.RequestContext) -> int:
        return await ctx.db.scratch.count()

    @app.endpoint("POST", "/boards/{board_id}/cards")
    async def add_card(ctx: turnlog.RequestContext, board_id: str, title: str, points: int = 1):
        assert ctx.user is not None
        return {
            "_id": await board.insert_one(
                {"board": board_id, "title": title, "by": ctx.user.id, "points": points}
            )
        }

    @app.endpoint("PUT", "/cards/{card_id}")
    async def put_card(card_id: str, body: Card) -> Any:
        return {"card_id": card_id, "title": body.title, "points": body.points}

    @app.endpoint("GET", "/boards/{board_id}/cards", authorized=False)
    async def cards(board_id: str, min_points: int = 0) -> Any:
        found = await board.find({"board": board_id, "points": {"$gte": min_points}})
        return sorted(c["title"] for c in found)

    @app.endpoint("DELETE", "/boards/{board_id}")
    async def clear(board_id: str) -> None:
        await board.delete_many({"board": board_id})

    @app.endpoint("GET", "/boom", authorized=False)
    async def boom() -> None:
        raise RuntimeError("secret internals")

    return app


@dataclass
class Web:
    http: httpx.AsyncClient
    host: SessionHost
    projector: Projector
    store: EventStore

    async def call(
        self, method: str, path: str, key: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return await self.http.request(method, path, headers=headers, **kwargs)

    async def ok(self, path: str, key: str | None = None, **params: Any) -> Any:
        response = await self.call("GET", path, key, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    async def chat(self, user: turnlog.UserInfo, *texts: str) -> None:
        session_id = None
        for text in texts:
            session_id = (await self.host.handle(said(text, user, session_id))).session_id
        await self.projector.caught_up()


async def stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        async with asyncio.timeout(10):
            await task


@pytest.fixture
async def web(store: EventStore) -> AsyncIterator[Web]:
    projector = Projector(store, list(PROJECTIONS.values()))
    projecting = asyncio.create_task(projector.run())
    app = web_app()
    wiring = Wiring.postgres(store)
    host = wiring.host(app, NoDelivery())
    serving: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(10):
            await projector.ready.wait()
        keys = Keys(parse_keys(KEYS))
        routes = app_routes(app, keys, store.pool, runtime=wiring.runtime(app))
        ready, port = asyncio.Event(), free_port()
        served = http_app(QueryService(store.pool), keys, routes)
        serving = asyncio.create_task(serve_http(served, "127.0.0.1", port, ready))
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait([serving, waiting], timeout=10, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if serving.done():
            serving.result()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield Web(client, host, projector, store)
    finally:
        if serving is not None:
            await stop(serving)
        await host.stop()
        await stop(projecting)


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"code", "message"} and body["code"] == code
    message: str = body["message"]
    return message


# -- data handlers -----------------------------------------------------------------------


async def test_an_authenticated_data_handler_needs_a_users_key(web: Web) -> None:
    assert_error(await web.call("GET", "/data/me"), 401, "unauthorized")
    wrong = await web.call("GET", "/data/me", "not-a-key-0123456789")
    assert_error(wrong, 401, "unauthorized")
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert "user" in assert_error(await web.call("GET", "/data/me", READ), 403, "forbidden")
    assert_error(await web.call("GET", "/data/me", ADMIN), 403, "forbidden")

    await web.chat(ALICE, "hi")  # her email and org come from her latest session
    response = await web.call("GET", "/data/me", ALICE_KEY, params={"limit": "5"})
    assert response.status_code == 200, response.text
    assert len(response.headers["x-request-id"]) == 32
    assert response.json() == {
        "user": "alice",
        "email": "alice@example.com",
        "authenticated": True,
        "limit": 5,
        "verbose": False,
    }
    assert (await web.ok("/data/me", BOB_KEY, verbose="true"))["verbose"] is True
    assert (await web.ok("/data/me", BOB_KEY))["email"] is None  # no session of his yet

    as_bob = await web.call("GET", "/data/me", ADMIN, headers={"X-Turnlog-User": "bob"})
    assert as_bob.status_code == 200 and as_bob.json()["user"] == "bob"
    other = await web.call("GET", "/data/me", ALICE_KEY, headers={"X-Turnlog-User": "bob"})
    assert_error(other, 403, "forbidden")

    bad = await web.call("GET", "/data/me", ALICE_KEY, params={"limit": "ten"})
    assert "'limit'" in assert_error(bad, 400, "invalid_request")
    bad = await web.call("GET", "/data/me", ALICE_KEY, params={"verbose": "perhaps"})
    assert "'verbose'" in assert_error(bad, 400, "invalid_request")
    assert "nope" in assert_error(await web.call("GET", "/data/nope"), 404, "not_found")


async def test_a_public_data_handler_answers_anyone(web: Web) -> None:
    assert await web.ok("/data/hello") == {
        "authenticated": False,
        "user": None,
        "greeting": "hello world",
        "integrations": {},
    }
    mine = await web.ok("/data/hello", ALICE_KEY, name="alice")
    assert (mine["authenticated"], mine["user"], mine["greeting"]) == (True, "alice", "hello alice")
    assert_error(await web.call("GET", "/data/hello", "not-a-key-0123456789"), 401, "unauthorized")


async def test_collections_in_data_handlers_are_scoped_to_the_caller(web: Web) -> None:
    await web.chat(ALICE, "milk", "eggs")
    await web.chat(ALBERT, "bread")  # alice's org
    await web.chat(BOB, "tea")
    assert await web.ok("/data/notes", ALICE_KEY) == ["eggs", "milk"]
    assert await web.ok("/data/notes", BOB_KEY) == ["tea"]
    assert await web.ok("/data/notes", ALBERT_KEY) == ["bread"]
    # owner scope: the org of the caller's latest session, as in chat
    team = [["albert", "bread"], ["alice", "eggs"], ["alice", "milk"]]
    assert await web.ok("/data/team", ALBERT_KEY) == team
    assert await web.ok("/data/team", BOB_KEY) == [["bob", "tea"]]

    assert await web.ok("/data/peek", ALICE_KEY) == 2
    anonymous = await web.call("GET", "/data/peek")
    assert "user-scoped" in assert_error(anonymous, 401, "unauthorized")
    assert_error(await web.call("GET", "/data/scratch", ALICE_KEY), 500, "internal")


# -- endpoints ---------------------------------------------------------------------------


async def test_an_endpoint_write_is_on_record_as_the_callers(web: Web) -> None:
    card = {"title": "ship it", "points": 3}
    response = await web.call("POST", "/boards/b1/cards", ALICE_KEY, json=card)
    assert response.status_code == 200, response.text
    doc_id = response.json()["_id"]
    rows = await web.store.pool.fetch(
        "SELECT type, actor, correlation_id FROM turnlog_events WHERE type LIKE 'document.%'"
    )
    assert [tuple(r) for r in rows] == [
        ("document.inserted", "user:alice", response.headers["x-request-id"])
    ]
    await web.call("POST", "/boards/b1/cards", BOB_KEY, json={"title": "small"})
    assert await web.ok("/boards/b1/cards") == ["ship it", "small"]  # authorized=False
    assert await web.ok("/boards/b1/cards", min_points=2) == ["ship it"]

    assert_error(await web.call("POST", "/boards/b1/cards", json=card), 401, "unauthorized")
    missing = await web.call("POST", "/boards/b1/cards", ALICE_KEY, json={"points": 2})
    assert "'title'" in assert_error(missing, 400, "invalid_request")
    typed = await web.call("POST", "/boards/b1/cards", ALICE_KEY, json={"title": "x", "points": []})
    assert "'points'" in assert_error(typed, 400, "invalid_request")
    garbled = await web.call(
        "POST",
        "/boards/b1/cards",
        ALICE_KEY,
        content=b"{",
        headers={"content-type": "application/json"},
    )
    assert "'body'" in assert_error(garbled, 400, "invalid_request")

    deleted = await web.call("DELETE", "/boards/b1", ALICE_KEY)
    assert deleted.status_code == 204 and deleted.content == b""
    assert await web.ok("/boards/b1/cards") == []
    actors = await web.store.pool.fetch(
        "SELECT actor FROM turnlog_events WHERE type = 'document.deleted'"
    )
    assert {r["actor"] for r in actors} == {"user:alice"} and len(actors) == 2
    assert doc_id


async def test_an_endpoint_takes_its_whole_body_as_a_struct(web: Web) -> None:
    put = await web.call("PUT", "/cards/c7", BOB_KEY, json={"title": "t", "points": 2})
    assert put.json() == {"card_id": "c7", "title": "t", "points": 2}
    bad = await web.call("PUT", "/cards/c7", BOB_KEY, json={"points": 2})
    assert "'body'" in assert_error(bad, 400, "invalid_request")


async def test_endpoint_errors_are_json_and_the_server_keeps_serving(web: Web) -> None:
    assert_error(await web.call("GET", "/nowhere"), 404, "not_found")
    assert_error(await web.call("PATCH", "/cards/c1", BOB_KEY), 405, "method_not_allowed")
    boom = await web.call("GET", "/boom")
    assert boom.json() == {"code": "internal", "message": "internal error"}
    assert boom.status_code == 500 and "secret" not in boom.text
    assert await web.ok("/data/hello") and (await web.call("GET", "/boom")).status_code == 500
    assert (await web.call("GET", "/v1/projections", READ)).status_code == 200


# -- declarations ------------------------------------------------------------------------


def test_declaration_clashes_and_mistakes_raise_app_error() -> None:
    app = turnlog.App("clash")

    @app.data("rows")
    async def rows() -> list[int]:
        return []

    @app.endpoint("POST", "/items/{item_id}")
    async def add(item_id: str) -> None: ...

    def declare(decorator: Any) -> None:
        decorator(lambda **kwargs: None)

    with pytest.raises(turnlog.AppError, match="already declared"):
        declare(app.data("rows", access="authenticated"))
    with pytest.raises(turnlog.AppError, match="already declared"):
        declare(app.endpoint("post", "/items/{other}"))
    declare(app.endpoint("GET", "/items/{item_id}"))  # another method: fine
    mistakes = [
        (app.data("x", access="private"), "access"),
        (app.data("a b"), "name"),
        (app.endpoint("FETCH", "/x"), "method"),
        (app.endpoint("GET", "no-slash"), "starts with"),
        (app.endpoint("GET", "/v1/mine"), "served by turnlog"),
        (app.endpoint("GET", "/data/x"), "served by turnlog"),
        (app.endpoint("GET", "/a/{b}/{b}"), "twice"),
        (app.endpoint("GET", "/a/x{b}"), "segment"),
    ]
    for decorator, problem in mistakes:
        with pytest.raises(turnlog.AppError, match=problem):
            declare(decorator)
    with pytest.raises(turnlog.AppError, match="no parameter 'item_id'"):
        app.endpoint("GET", "/other/{item_id}")(rows)
    with pytest.raises(turnlog.AppError, match="by name"):
        app.data("pos")(lambda x, /: x)


# -- turnlog run -------------------------------------------------------------------------

APP_FILE = """
import turnlog

app = turnlog.App("cli_routes")


@app.message()
async def handle(session, msg):
    await session.reply(msg.text)


@app.data("whoami", access="authenticated")
async def whoami(ctx: turnlog.RequestContext, times: int = 1):
    return {"user": ctx.user.id, "times": times}


@app.data("ping")
def ping(ctx: turnlog.RequestContext):
    return {"authenticated": ctx.authenticated}
"""


def spawn_run(path: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "turnlog", "run", str(path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


async def test_turnlog_run_serves_the_apps_routes(cli_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "routes_app.py"
    path.write_text(APP_FILE)
    env = cli_env | {"TURNLOG_API_KEYS": f"{API_KEY}:read,{ALICE_KEY}:read:user=alice"}
    base = f"http://127.0.0.1:{env['TURNLOG_HTTP_PORT']}"
    log = tmp_path / "run.log"
    process = spawn_run(path, env, log)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, log.read_text()
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/healthz")).status_code == 200:
                        break
                assert time.monotonic() < deadline, "turnlog run did not serve HTTP in time"
                await asyncio.sleep(0.2)
            assert (await http.get("/data/ping")).json() == {"authenticated": False}
            assert (await http.get("/data/whoami")).status_code == 401
            answer = await http.get(
                "/data/whoami",
                params={"times": "3"},
                headers={"Authorization": f"Bearer {ALICE_KEY}"},
            )
            assert answer.json() == {"user": "alice", "times": 3}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
