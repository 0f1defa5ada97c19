"""Property-based fuzzing of every entry, against turnlog serving an app on real servers:
hostile text (U+0000, lone surrogates, bytes that are not UTF-8, RTL and BOM and
combining marks), JSON nested deep, NaN/Infinity/1e309, very long keys, empty and
maximum sizes. Whatever comes in is refused with a clear reason or stored; nothing is a
500, a traceback or a stopped part, and afterwards the projections equal their rebuild
and the log verifies.

Hypothesis drives from a thread of its own; each example's I/O runs on the test's loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec
import nats
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NATS

import turnlog
from turnlog.domain.errors import DomainError
from turnlog.domain.values import MAX_DEPTH, MAX_NAME_CHARS, unstorable_at
from turnlog.projections.catalog import PROJECTIONS
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.embedded.processes import free_port
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.projector.check import check
from turnlog.services.adapters.postgres.verify import verify
from turnlog.services.bootstrap.serve import Parts, serve
from turnlog.services.sdk.collections import CollectionError
from turnlog.services.settings import Settings

T = TypeVar("T")
ADMIN = "fuzz-admin-key-0123456789"
USER = "fuzz-user-key-0123456789"
HOSTILE_CHARS = ["\x00", "\ud800", "\udfff", "\u202e", "\ufeff", "\u0301", "\uffff", "😀",
                 "\x01", "\\", '"', "u", "0", "a", " ", "/", "%", "\n"]  # fmt: skip
EXAMPLES = settings(
    max_examples=int(os.environ.get("TURNLOG_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


def deep(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"d": value} if levels % 2 else [value]
    return value


texts = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from(HOSTILE_CHARS), max_size=40),
    st.sampled_from(["", "k" * (MAX_NAME_CHARS + 1), "x" * 5000, "org:acme", "app:fuzz"]),
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), texts
)
shallow = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
# nested this deep (0: not), built in the test: hypothesis need not print such a value
depths = st.sampled_from([0, 0, 0, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 500])


def nest(value: Any, depth: int) -> Any:
    return deep(depth) if depth else value


PROBES: dict[str, Any] = {}


def fuzz_app() -> turnlog.App:
    app = turnlog.App("fuzz")
    notes = app.collection("notes", scope="user", indexes=["tag"])

    @app.task
    async def keep(session: turnlog.TaskSession, value: Any = None) -> Any:
        return value

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        """Push the probe the test left under this message's text through every API a
        handler has; reply with which refused it, by error code."""
        value = PROBES.pop(msg.text, msg.text)
        text = value if isinstance(value, str) else str(value)
        refused: dict[str, str] = {}
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "block": lambda: session.show(turnlog.Block("card", {"v": value})),
            "document": lambda: notes.insert_one({"v": value, "tag": "t"}),
            "filter": lambda: session.db.notes.find({"v": value}),
            "task": lambda: keep.submit(session=session, value=value),
            "effect": lambda: session.effect("probe", lambda: value),
            "notify": lambda: session.notify(text),
            "block id": lambda: session.show(turnlog.Block("card", {}, id=text or "x")),
        }
        for name, call in calls.items():
            try:
                await call()
            except (DomainError, CollectionError, TypeError) as e:
                refused[name] = getattr(e, "code", "") or type(e).__name__
        session.data["probe"] = value  # recorded at the end: a refused value fails the turn
        if text:
            session.data[text] = 1  # a data key from outside
        await session.reply(msgspec.json.encode(refused).decode())

    @app.endpoint("POST", "/probe/{name}")
    async def probe(ctx: turnlog.RequestContext, name: str, body: Any = None) -> Any:
        await notes.insert_one({"name": name, "v": body, "tag": "http"})
        return {"name": name}

    @app.data("find", access="authenticated")
    async def find(ctx: turnlog.RequestContext, tag: str = "", q: str = "") -> Any:
        return {"found": len(await notes.find({"tag": tag, "v": q}))}

    return app


@dataclass
class World:
    loop: asyncio.AbstractEventLoop
    store: EventStore
    nc: NATS
    http: httpx.AsyncClient
    prefix: str
    session_id: str

    def run(self, work: Awaitable[T], timeout: float = 60.0) -> T:
        """Run ``work`` on the test's loop from hypothesis's thread."""
        return asyncio.run_coroutine_threadsafe(_bounded(work, timeout), self.loop).result()


async def _bounded(work: Awaitable[T], timeout: float) -> T:
    async with asyncio.timeout(timeout):
        return await work


@pytest.fixture
async def world(
    store: EventStore, database_url: str, servers: Endpoints, prefix: str, tmp_path: Path
) -> AsyncIterator[World]:
    port = free_port()
    settings = Settings(
        home=tmp_path, subject_prefix=prefix, ack_wait=5.0, http_port=port,
        api_keys=f"{ADMIN}:admin,{USER}:read:user=fuzzer",
    )  # fmt: skip
    ready = asyncio.Event()
    parts = Parts(app=fuzz_app(), relay=True, projector=True, api=True)
    serving = asyncio.create_task(
        serve(settings, database_url, servers.nats_url, parts, ready=ready, handle_signals=False)
    )
    await asyncio.wait_for(ready.wait(), 30)
    nc = await nats.connect(servers.nats_url)
    client = turnlog.Client(nc, Subjects(prefix))
    session = client.session("fuzz", user={"id": "fuzzer"})
    await session.send_message("hello", timeout=60)  # the session, and an HTTP server up
    await _until_listening(port)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        try:
            yield World(asyncio.get_running_loop(), store, nc, http, prefix, session.id)
            await _consistent(store)
            health = (await http.get("/healthz")).json()
            assert health["ok"], health  # every part still running, no projection failed
        finally:
            await nc.close()
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)


async def _until_listening(port: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        for _ in range(100):
            try:
                await http.get("/healthz")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)


async def _consistent(store: EventStore) -> None:
    """Projections reach the end of the log and equal their rebuild; the log verifies."""
    deadline = time.monotonic() + 60
    while True:
        last = await store.last_position()
        low = await store.pool.fetchval(
            "SELECT min(position) FROM turnlog_projection_positions WHERE name = ANY($1)",
            list(PROJECTIONS),
        )
        if low >= last:
            break
        assert time.monotonic() < deadline, f"projections stuck at {low} of {last}"
        await asyncio.sleep(0.1)
    assert all(c.ok for c in await check(store, list(PROJECTIONS.values())))
    assert not (await verify(store)).broken


async def in_thread(test: Callable[[], None]) -> None:
    """Run a hypothesis test (blocking) off the event loop it drives."""
    await asyncio.to_thread(test)


# -- the bus ----------------------------------------------------------------------------


async def _outcome(world: World, message_id: str, raw: bytes) -> str:
    """``turn`` once the message's turn is on record, or the dead letter's reason."""
    letters = await world.nc.subscribe(f"{world.prefix}.dlq.fuzz")
    done = await world.nc.subscribe(f"{world.prefix}.live.fuzz.{world.session_id}")
    try:
        subject = f"{world.prefix}.in.fuzz.{world.session_id}"
        await world.nc.jetstream().publish(subject, raw, headers={"Nats-Msg-Id": message_id})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if await world.store.pool.fetchval(
                "SELECT count(*) FROM turnlog_events WHERE correlation_id = $1"
                " AND type IN ('session.turn_completed', 'session.data_set')",
                message_id,
            ):
                return "turn"
            while done.pending_msgs:
                live = msgspec.json.decode((await done.next_msg()).data)
                if live.get("message_id") == message_id and live.get("outcome") == "ok":
                    return "turn"  # a set_vars that changed nothing has no event
            try:
                msg = await letters.next_msg(timeout=0.05)
            except nats.errors.TimeoutError:
                continue
            letter = msgspec.json.decode(msg.data)
            if msgspec.json.decode(f'"{letter["original"]}"'.encode(), type=bytes) == raw:
                return str(letter["reason"])
        raise AssertionError(f"message {message_id} neither handled nor dead-lettered")
    finally:
        await letters.unsubscribe()
        await done.unsubscribe()


def _raw(body: dict[str, Any]) -> bytes:
    """``body`` as JSON bytes: lone surrogates and NaN as a producer could send them."""
    return msgspec.json.encode(body, enc_hook=str) if _plain(body) else _lenient(body)


def _plain(value: Any) -> bool:
    try:
        msgspec.json.encode(value)
        return True
    except Exception:
        return False


def _lenient(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=True).encode()  # \ud800 escapes, NaN, Infinity


async def test_the_bus_refuses_or_stores_any_inbound_message(world: World) -> None:
    @EXAMPLES
    @given(text=texts, variables=st.dictionaries(texts, shallow, min_size=1, max_size=3),
           depth=depths)  # fmt: skip
    def one(text: str, variables: dict[str, Any], depth: int) -> None:
        variables = {k: nest(v, depth) for k, v in variables.items()}
        mid = uuid.uuid4().hex
        message = {"kind": "message", "message_id": mid, "session_id": world.session_id,
                   "user": {"id": "fuzzer"}, "text": text}  # fmt: skip
        raw = _raw(message)
        outcome = world.run(_outcome(world, mid, raw))
        # as a JSON reader sees it: two escaped halves of a surrogate pair are one character
        text = json.loads(raw)["text"]
        if unstorable_at(text) is not None:
            assert outcome == "invalid_text"
        elif len(text) <= 5000:
            assert outcome == "turn"
        mid = uuid.uuid4().hex
        update = {"kind": "set_vars", "message_id": mid, "session_id": world.session_id,
                  "variables": variables}  # fmt: skip
        outcome = world.run(_outcome(world, mid, _raw(update)))
        assert outcome in ("turn", "too_deep", "schema_violation", "undecodable") or (
            outcome.startswith("invalid_")
        ), outcome

    await in_thread(one)


# -- the handler API: session.data, blocks, documents, filters, tasks, effects ----------


async def test_every_handler_api_refuses_unstorable_values_by_name(world: World) -> None:
    async def probe(value: Any) -> tuple[str, dict[str, str]]:
        key = f"probe-{uuid.uuid4().hex}"
        PROBES[key] = value
        client = turnlog.Client(world.nc, Subjects(world.prefix))
        session = client.session("fuzz", session_id=world.session_id, user={"id": "fuzzer"})
        try:
            round_ = await session.send_message(key, timeout=60)
        finally:
            await session.detach()
        completed = [e for e in round_.events if e.type == "session.turn_completed"]
        refused = msgspec.json.decode(round_.reply.split("\n\n")[0]) if round_.reply else {}
        return str(completed[0].payload["outcome"]), refused

    @EXAMPLES
    @given(value=shallow, depth=depths)
    def one(value: Any, depth: int) -> None:
        value = nest(value, depth)
        outcome, refused = world.run(probe(value))
        if _storable({"v": value}):  # as a block's, a document's or a task's field
            assert not {"block", "document", "effect", "task"} & set(refused), refused
        elif not _storable(value):
            for api in ("block", "document", "effect", "task"):
                assert refused.get(api) in ("invalid_text", "too_deep", "not_json_encodable"), (
                    api, refused,
                )  # fmt: skip
            assert outcome == "failed"  # session.data refused it: the turn says so

    await in_thread(one)


def _storable(value: Any, depth: int = 0) -> bool:
    if isinstance(value, str):
        return unstorable_at(value) is None
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    if isinstance(value, list | dict):
        if depth >= MAX_DEPTH:
            return False
        items = list(value.items()) if isinstance(value, dict) else [(None, v) for v in value]
        return all((k is None or _storable(k)) and _storable(v, depth + 1) for k, v in items)
    return True


# -- HTTP: the query API, app routes, uploads, integrations ------------------------------

OK_STATUS = {200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 415}


async def _asked(world: World, method: str, url: str, **kwargs: Any) -> httpx.Response:
    response = await world.http.request(method, url, **kwargs)
    assert response.status_code in OK_STATUS, (method, url, response.status_code, response.text)
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"code", "message"} and body["code"] != "internal", body
    return response


def _quoted(text: str) -> str:
    from urllib.parse import quote

    return quote(text.encode("utf-8", "surrogatepass"), safe="")


async def test_http_entries_answer_hostile_input_with_clear_errors(world: World) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}", "X-Turnlog-User": "fuzzer"}
    user = {"Authorization": f"Bearer {USER}"}

    async def hammer(text: str, body: Any) -> None:
        q = _quoted(text)
        raw = _raw({"x": body}) if isinstance(body, dict | list) else _lenient(body)
        for url in (f"/v1/sessions?user={q}&app={q}", f"/v1/sessions/{q}",
                    f"/v1/sessions/{q}/history?cursor={q}", f"/v1/sessions?since={q}",
                    f"/v1/sessions/{world.session_id}/state?at={q}", f"/data/find?tag={q}&q={q}",
                    f"/data/{q}", f"/v1/integrations/{q}"):  # fmt: skip
            await _asked(world, "GET", url, headers=user)
        find = _raw({"app": "fuzz", "collection": "notes", "filter": {"v": body}})
        await _asked(world, "POST", "/v1/collections/find", content=find,
                     headers={**user, "content-type": "application/json"})  # fmt: skip
        await _asked(world, "POST", f"/probe/{q}", content=raw,
                     headers={**admin, "content-type": "application/json"})  # fmt: skip
        await _asked(world, "POST", f"/v1/files?name={q}", content=b"file", headers=admin)
        credentials = _raw({"credentials": {"token": text, q[:20] or "k": body}})
        await _asked(world, "POST", f"/v1/integrations/fuzzer/{q or 'x'}", content=credentials,
                     headers={**admin, "content-type": "application/json"})  # fmt: skip
        printable = "".join(c for c in text if c.isprintable()).strip()[:200] or "u"
        as_header = printable.encode("utf-8", "replace")  # the bytes, as a client sends them
        await _asked(world, "GET", "/data/find", headers={**admin, "X-Turnlog-User": as_header})

    @EXAMPLES
    @given(text=texts, body=shallow, depth=depths)
    def one(text: str, body: Any, depth: int) -> None:
        world.run(hammer(text, nest(body, depth)))

    await in_thread(one)
    status = await world.http.get("/v1/projections", headers={"Authorization": f"Bearer {ADMIN}"})
    assert all(p["state"] == "ok" for p in status.json()["items"])


async def test_nats_queries_and_integration_commands_answer_hostile_input(world: World) -> None:
    async def ask(text: str, body: Any) -> None:
        for name, params in (("sessions.list", {"user": text, "cursor": text}),
                             ("sessions.get", {"session_id": text}),
                             ("collections.find", {"app": "fuzz", "collection": text,
                                                   "filter": {"v": body}})):  # fmt: skip
            request = _raw({"key": ADMIN, "params": params})
            reply = await world.nc.request(f"{world.prefix}.query.{name}", request, timeout=10)
            answer = msgspec.json.decode(reply.data)
            assert "ok" in answer or answer["error"]["code"] != "internal", answer
        command = _raw({"kind": "connect", "user_id": text or "u", "type": "github",
                        "credentials": {"token": body}})  # fmt: skip
        reply = await world.nc.request(f"{world.prefix}.control.integrations", command, timeout=10)
        answer = msgspec.json.decode(reply.data)
        assert answer["ok"] or answer["error"]["code"] != "internal", answer

    @EXAMPLES
    @given(text=texts, body=shallow, depth=depths)
    def one(text: str, body: Any, depth: int) -> None:
        world.run(ask(text, nest(body, depth)))

    await in_thread(one)
