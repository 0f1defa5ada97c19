"""The erasure search: after ``turnlog erase-user``, the user's texts are found nowhere
turnlog keeps them (every message of every stream, the file store, every table, the
logs, and the NATS server's files), another user's are untouched, bus consumers of
every app the user had data in get the erasure notice, and the streams stay bounded."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import glob
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy
from nats.js.errors import NotFoundError

import turnlog
from tests import helpers
from tests.integration.conftest import Start
from turnlog.contracts import bus
from turnlog.contracts.events import UserRef
from turnlog.projections.catalog import PROJECTIONS
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.embedded.processes import free_port
from turnlog.services.adapters.nats.relay import Relay
from turnlog.services.adapters.nats.streams import ensure_streams
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.adapters.postgres.erasure import erase, erasure_stream
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.projector.runner import Projector

# What each user says, sends in a file, and has dead-lettered (each distinctive).
SAID = {"alice": "card 4111-1111-1111-1111 exp 09/29", "bob": "bob's locker code 9-27-53"}
FILED = {"alice": "passport X7731904", "bob": "bob's lease no. L-55102"}
REFUSED = {"alice": "IBAN DE89370400440532013000", "bob": "bob's pin 4711"}
ASTRAY = {"alice": "blood type AB negative"}  # sent to an app nobody serves


def vault_app(name: str = "vault") -> turnlog.App:
    app = turnlog.App(name)
    app.collection("notes", scope="user")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        session.data["last"] = msg.text
        await session.db.notes.insert_one({"_id": f"n-{msg.id}", "text": msg.text})
        for attachment in msg.attachments:
            with tempfile.TemporaryDirectory() as where:
                path = await attachment.download(where)
                await session.reply(f"filed: {path.read_text()}")
        await session.reply(f"noted: {msg.text}")

    return app


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def projecting(store: EventStore) -> AsyncIterator[Projector]:
    projector = Projector(store, list(PROJECTIONS.values()))
    task = asyncio.create_task(projector.run())
    await projector.ready.wait()
    try:
        yield projector
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def turnlog_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """The turnlog command, run without blocking this loop (the relay runs in it)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "turnlog", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


# -- the search -------------------------------------------------------------------------


def _readable(data: bytes) -> bytes:
    """``data`` and what it carries encoded: a dead letter's original is base64."""
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        original = json.loads(data).get("original")
        if isinstance(original, str):
            return data + b"\n" + base64.b64decode(original)
    return data


async def stream_messages(js: JetStreamContext, prefix: str) -> dict[str, list[bytes]]:
    """Every message of every stream of this prefix (its file store and app registry
    too), by stream name."""
    mine = (prefix.upper() + "_", f"OBJ_{prefix.upper()}_", f"KV_{prefix.upper()}_")
    found: dict[str, list[bytes]] = {}
    for info in await js.streams_info():
        name = info.config.name or ""
        if not name.startswith(mine):
            continue
        found[name] = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            with contextlib.suppress(NotFoundError):
                msg = await js.get_msg(name, seq)
                found[name].append(_readable(msg.data or b""))
    return found


async def table_rows(store: EventStore) -> list[bytes]:
    """Every row of every table, as JSON text (bytea columns in hex)."""
    names = await store.pool.fetch(
        "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM"
        " information_schema.tables WHERE table_schema NOT IN ('pg_catalog',"
        " 'information_schema') AND table_type = 'BASE TABLE'"
    )
    rows = []
    for (name,) in names:
        rows += [f"{name} {r[0]}".encode() for r in await store.pool.fetch(
            f"SELECT row_to_json(t)::text FROM {name} t"
        )]  # fmt: skip
    return rows


def server_files(prefix: str) -> list[bytes]:
    """The embedded NATS server's files of this prefix's streams (none for an external
    server, whose files are elsewhere)."""
    pattern = f"{tempfile.gettempdir()}/turnlog-test-*/nats/**/streams/*{prefix.upper()}_*"
    contents = []
    for directory in glob.glob(pattern, recursive=True):
        for root, _, names in os.walk(directory):
            contents += [Path(root, n).read_bytes() for n in names]
    return contents


def where_found(texts: Iterable[str], places: dict[str, list[bytes]]) -> dict[str, set[str]]:
    """Which places hold each text, in clear or (for table dumps) as hex."""
    found: dict[str, set[str]] = {}
    for text in texts:
        needles = (text.encode(), text.encode().hex().encode())
        for place, items in places.items():
            if any(n in item for item in items for n in needles):
                found.setdefault(text, set()).add(place)
    return found


async def everywhere(
    js: JetStreamContext, prefix: str, store: EventStore, logs: str
) -> dict[str, list[bytes]]:
    places = await stream_messages(js, prefix)
    return {
        **places,
        "tables": await table_rows(store),
        "logs": [logs.encode()],
        "nats server files": server_files(prefix),
    }


# -- the conversation -------------------------------------------------------------------


async def converse(client: turnlog.Client, user: str, apps: list[str]) -> list[str]:
    """A session of ``user`` in each app: a message, one with a file; the session ids."""
    sessions = []
    for app in apps:
        session = client.session(app, user={"id": user, "email": f"{user}@example.com"})
        assert (await session.send_message(SAID[user])).outcome == "ok"
        file = {"name": "document.txt", "data": FILED[user].encode()}
        round_ = await session.send_message("here it is", files=[file])
        assert f"filed: {FILED[user]}" in round_.reply
        sessions.append(session.id)
    return sessions


async def dead_letter(client: turnlog.Client, user: str, app: str, session_id: str) -> None:
    """A message on the user's session that breaks the contract (an unknown field)."""
    raw = msgspec.json.encode(
        {"kind": "message", "message_id": uuid.uuid4().hex, "session_id": session_id,
         "user": {"id": user}, "text": REFUSED[user], "unexpected": True}
    )  # fmt: skip
    await client.js.publish(client.subjects.inbound(app, session_id), raw)


async def astray(client: turnlog.Client, user: str) -> None:
    """A new session's first message for an app nobody serves."""
    message = bus.InboundMessage(
        message_id=uuid.uuid4().hex, user=UserRef(id=user), text=ASTRAY[user]
    )
    await client.js.publish(client.subjects.inbound("ghost", None), msgspec.json.encode(message))


async def dead_letters(js: JetStreamContext, subjects: Subjects) -> int:
    with contextlib.suppress(NotFoundError):
        return (await js.stream_info(subjects.stream_dlq)).state.messages
    return 0


# -- the tests ---------------------------------------------------------------------------


@pytest.mark.slow
async def test_after_erase_user_their_texts_are_found_nowhere_and_the_streams_stay_bounded(
    start_serving: Start,
    servers: Endpoints,
    prefix: str,
    store: EventStore,
    cli_env: dict[str, str],
    capfd: pytest.CaptureFixture[str],
) -> None:
    subjects = Subjects(prefix)
    await start_serving(vault_app("vault"))
    await start_serving(vault_app("diary"), relay=False)
    nc = await nats.connect(servers.nats_url)
    js = nc.jetstream()
    notices: list[bus.EventEnvelope] = []

    async def notice(msg: Any) -> None:
        event = msgspec.json.decode(msg.data, type=bus.EventEnvelope)
        if event.type == "user.erased":
            notices.append(event)

    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        for app in ("vault", "diary"):  # what each app's bus consumers subscribe to
            await nc.subscribe(f"{prefix}.events.{app}.>", cb=notice)
        async with projecting(store) as projector:
            alice = await converse(client, "alice", ["vault", "diary"])
            [bob] = await converse(client, "bob", ["vault"])
            await dead_letter(client, "alice", "vault", alice[0])
            await dead_letter(client, "bob", "vault", bob)
            await astray(client, "alice")
            await until(lambda: _count_is(dead_letters(js, subjects), 3))
            await projector.caught_up()

            before = await everywhere(js, prefix, store, "")
            secrets = [SAID["alice"], FILED["alice"], REFUSED["alice"], ASTRAY["alice"]]
            found = where_found(secrets, before)
            assert subjects.stream_events in found[SAID["alice"]]  # relayed in clear
            assert f"OBJ_{subjects.bucket_files}" in found[FILED["alice"]]
            assert found[REFUSED["alice"]] >= {subjects.stream_dlq}
            assert found[ASTRAY["alice"]] >= {subjects.stream_dlq}

            code, out, err = await turnlog_cli(cli_env, "erase-user", "alice", "--json")
            assert code == 0, err
            report = json.loads(out)
            await until(lambda: _has(notices, 2))
            await projector.caught_up()

            logged = capfd.readouterr()  # this process's: the runtime's and relay's
            after = await everywhere(js, prefix, store, err + logged.out + logged.err)
            bobs = where_found([SAID["bob"], FILED["bob"], REFUSED["bob"]], after)
    finally:
        await client.close()
        await nc.close()

    assert where_found(secrets, after) == {}
    assert after["nats server files"] or not servers.nats_embedded  # looked there
    purged = report["purged"]
    assert purged["error"] is None and purged["files"] == 2 and purged["dead_letters"] == 2
    assert purged["events"] >= 2 * 8 and purged["inbound"] == 0  # handled ones are gone
    assert report["sessions"] == 2 and report["documents"] == 4
    # bob's are where they were
    assert subjects.stream_events in bobs[SAID["bob"]]
    assert f"OBJ_{subjects.bucket_files}" in bobs[FILED["bob"]]
    assert subjects.stream_dlq in bobs[REFUSED["bob"]]
    if servers.nats_embedded:
        assert "nats server files" in bobs[SAID["bob"]]
    # every app alice had sessions in hears of the erasure, once
    stream = erasure_stream("alice")
    assert sorted((n.stream_id, n.payload["apps"] == ["diary", "vault"]) for n in notices) == [
        (stream, True), (stream, True)
    ]  # fmt: skip
    await _assert_bounded(servers.nats_url, subjects)


async def test_erase_user_with_nats_out_of_reach_erases_the_log_and_a_second_run_purges(
    start_serving: Start,
    servers: Endpoints,
    prefix: str,
    store: EventStore,
    cli_env: dict[str, str],
) -> None:
    await start_serving(vault_app())
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        await converse(client, "alice", ["vault"])
    finally:
        await client.close()
    away = {**cli_env, "TURNLOG_NATS_URL": f"nats://127.0.0.1:{free_port()}"}
    code, out, err = await turnlog_cli(away, "erase-user", "alice")
    assert code == 3, out + err
    assert "erased user alice" in out and "NOT purged from NATS: cannot connect to NATS" in out
    assert "run erase-user again" in err and "Traceback" not in err
    erased = await store.pool.fetchval(
        "SELECT bool_and(key IS NULL) FROM turnlog_user_keys WHERE user_id = 'alice'"
    )
    assert erased

    code, out, err = await turnlog_cli(cli_env, "erase-user", "alice", "--json")
    assert code == 0, err
    again = json.loads(out)
    assert again["already_erased"] and again["purged"]["error"] is None
    assert again["purged"]["events"] >= 8 and again["purged"]["files"] == 1
    code, out, _ = await turnlog_cli(cli_env, "erase-user", "alice")
    assert code == 0 and "deleted from NATS: 0 relayed event(s)" in out


def echo_app(name: str) -> turnlog.App:
    app = turnlog.App(name)

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        await session.reply(f"noted: {msg.text}")

    return app


async def test_the_erasure_notice_reaches_each_app_once_even_when_the_log_is_relayed_again(
    store: EventStore, servers: Endpoints, prefix: str
) -> None:
    for name in ("vault", "diary"):
        await helpers.converse(store, echo_app(name), [SAID["alice"]], helpers.ALICE)
    erasure = await erase(store, "alice", actor="operator:test")
    assert erasure.reach.apps == ("diary", "vault")
    subjects = Subjects(prefix)
    nc = await nats.connect(servers.nats_url)
    try:
        js = nc.jetstream()
        await ensure_streams(js, subjects)
        for name in ("relay", "relay-again"):  # the second publishes it all once more
            relay = Relay(store, nc, subjects, name=name)
            running = asyncio.create_task(relay.run())
            await until(functools.partial(_relayed, relay, erasure.report.position or 0))
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        stream = erasure_stream("alice")
        notices = await notices_on(js, subjects.stream_events, f"{prefix}.events.*.{stream}")
    finally:
        await nc.close()
    assert notices == {f"{prefix}.events.{app}.{stream}" for app in ("_", "diary", "vault")}


async def notices_on(js: JetStreamContext, stream: str, subject: str) -> set[str]:
    """The subjects of the messages on ``subject``, each seen once at most."""
    seen: list[str] = []
    seq = 1
    while True:
        try:
            msg = await js.get_msg(stream, seq, subject=subject, next=True)
        except NotFoundError:
            break
        seen.append(msg.subject or "")
        seq = (msg.seq or seq) + 1
    assert len(seen) == len(set(seen)), seen
    return set(seen)


async def _relayed(relay: Relay, position: int) -> bool:
    return relay.published >= position


async def _assert_bounded(nats_url: str, subjects: Subjects) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        inbound = await js.stream_info(subjects.stream_in)
        events = (await js.stream_info(subjects.stream_events)).config
        dlq = (await js.stream_info(subjects.stream_dlq)).config
    finally:
        await nc.close()
    assert inbound.config.retention == RetentionPolicy.INTEREST
    assert inbound.state.messages == 0  # every message was handled
    assert inbound.config.discard == DiscardPolicy.NEW and (inbound.config.max_bytes or 0) > 0
    for config in (events, dlq):
        assert (config.max_age or 0) > 0 and (config.max_bytes or 0) > 0
        assert config.discard == DiscardPolicy.OLD


async def _count_is(count: Awaitable[int], expected: int) -> bool:
    return await count == expected


async def _has(items: list[Any], count: int) -> bool:
    return len(items) >= count
