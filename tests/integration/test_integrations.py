"""Integrations on real PostgreSQL and NATS: connected and disconnected through the
service, the CLI, HTTP and the producer client, on record with their actor; the
credentials sealed in the log, withheld from every other reader, absent from every
table, the relayed events and the logs; shredded by erase-user; seen by data and
scheduled handlers; announced on NATS without them."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import pytest

import turnlog
from turnlog.contracts import bus
from turnlog.domain.integrations import IntegrationError
from turnlog.projections.catalog import PROJECTIONS
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.nats.integrations import NatsNotices, watch
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.adapters.postgres.erasure import erase_user
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.projector.check import check as check_projections
from turnlog.services.adapters.postgres.projector.runner import Projector
from turnlog.services.app import sealed
from turnlog.services.app.integrations import Integrations, integrations_stream
from turnlog.services.bootstrap.wiring import Wiring

TOKEN = "ghp_Integr4tionT0kenNeverInClear"
ADMIN = "admin-key-0123456789"
ALICE_KEY = "alice-key-0123456789"
READ = "read-key-0123456789"
KEYS = f"{ADMIN}:admin,{ALICE_KEY}:read:user=alice,{READ}:read"


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def test_connect_then_disconnect_on_record_with_the_actor(store: EventStore) -> None:
    service = Integrations(store)
    await service.connect("alice", "github", {"token": TOKEN}, actor="user:alice", scopes=["repo"])
    await service.connect("alice", "gmail", {"token": "g1", "refresh": "r1"}, actor="app:x")
    assert await service.for_user("alice") == {
        "github": {"token": TOKEN},
        "gmail": {"token": "g1", "refresh": "r1"},
    }
    assert await service.for_user("bob") == {}
    github, _ = await service.connections("alice")
    assert (github.type, github.scopes, github.connected_by) == ("github", ("repo",), "user:alice")
    assert github.credentials == {"_withheld": True}  # a listing never opens them

    assert await service.disconnect("alice", "gmail", actor="operator:ops", reason="revoked")
    assert not await service.disconnect("alice", "gmail", actor="operator:ops")
    assert await service.for_user("alice") == {"github": {"token": TOKEN}}
    records = await store.read_stream(integrations_stream("alice"))
    assert [(r.type, r.actor) for r in records] == [
        ("integration.connected", "user:alice"),
        ("integration.connected", "app:x"),
        ("integration.disconnected", "operator:ops"),
    ]
    found = sealed.parse(records[0].payload)
    assert found is not None and found[0].user == "alice" and found[0].fields == ("credentials",)
    assert TOKEN.encode() not in records[0].payload
    assert msgspec.json.decode(records[2].payload)["reason"] == "revoked"


async def test_bad_input_is_refused_before_anything_is_recorded(store: EventStore) -> None:
    service = Integrations(store)
    with pytest.raises(IntegrationError, match="integration type"):
        await service.connect("alice", "git hub", {"token": TOKEN}, actor="user:alice")
    with pytest.raises(IntegrationError, match="non-empty JSON object"):
        await service.connect("alice", "github", {}, actor="user:alice")
    assert await store.read_stream(integrations_stream("alice")) == []


async def test_erasing_the_user_shreds_the_credentials(store: EventStore) -> None:
    service = Integrations(store)
    await service.connect("alice", "github", {"token": TOKEN}, actor="user:alice")
    await service.connect("bob", "github", {"token": "bobs"}, actor="user:bob")
    projector = Projector(store, list(PROJECTIONS.values()))
    projecting = asyncio.create_task(projector.run())
    try:
        await projector.ready.wait()
        report = await erase_user(store, "alice", reason="asked")
        await projector.caught_up()
    finally:
        projecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await projecting
    checked = await check_projections(store, list(PROJECTIONS.values()))
    assert checked and all(table.ok for table in checked)
    assert report.events_sealed == 1
    assert await service.for_user("alice") == {}
    [github] = await service.connections("alice")
    assert github.credentials == {"_erased": True}
    assert await service.for_user("bob") == {"github": {"token": "bobs"}}
    await service.connect("alice", "github", {"token": "after"}, actor="user:alice")
    assert await service.for_user("alice") == {"github": {"token": "after"}}


async def test_a_change_is_announced_without_the_credentials(
    store: EventStore, servers: Endpoints, prefix: str
) -> None:
    nc = await nats.connect(servers.nats_url)
    try:
        subjects = Subjects(prefix)
        raw = await nc.subscribe(subjects.integrations_all())
        seen: list[tuple[str, str, bool]] = []
        watching = await watch(nc, subjects, lambda *change: seen.append(change))
        service = Integrations(store, notices=NatsNotices(nc, subjects))
        await service.connect("a.b@example.com", "github", {"token": TOKEN}, actor="user:ab")
        msg = await raw.next_msg(timeout=5)
        assert msg.subject == subjects.integrations("a.b@example.com")
        assert TOKEN.encode() not in msg.data
        notice = msgspec.json.decode(msg.data, type=bus.IntegrationChanged)
        assert notice == bus.IntegrationChanged(
            user_id="a.b@example.com", type="github", connected=True
        )
        await service.disconnect("a.b@example.com", "github", actor="user:ab")
        await until(lambda: _true(len(seen) == 2), timeout=5)
        assert seen == [("a.b@example.com", "github", True), ("a.b@example.com", "github", False)]
        await watching.unsubscribe()
    finally:
        await nc.close()


async def _true(value: bool) -> bool:
    return value


async def test_a_scheduled_handler_sees_its_owners_integrations(store: EventStore) -> None:
    await Integrations(store).connect("alice", "github", {"token": TOKEN}, actor="user:alice")
    app = turnlog.App("sched_integrations")
    seen: list[dict[str, Any]] = []

    @app.schedule("* * * * * *", owner="alice")
    async def tick() -> None:
        session = turnlog.current_session()
        assert session is not None
        seen.append(dict(session.integrations))

    scheduler = Wiring.postgres(store).scheduler(app, worker="w1")
    await scheduler.start()
    try:
        await until(lambda: _true(bool(seen)), timeout=10)
    finally:
        await scheduler.stop()
    assert seen[0] == {"github": {"token": TOKEN}}


# -- turnlog run, the CLI, HTTP and the producer client ----------------------------------

APP_FILE = """
import turnlog

app = turnlog.App("integrations_app")


@app.message()
async def handle(session, msg):
    await session.reply(msg.text)


@app.data("github", access="authenticated")
async def github(ctx: turnlog.RequestContext):
    found = ctx.integrations.get("github")
    return {"connected": sorted(ctx.integrations), "token": found["token"] if found else None}
"""


def cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnlog", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def spawn_run(path: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``turnlog run`` with its stdout and stderr in ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "turnlog", "run", str(path)], env=env, stdout=out, stderr=out
        )


def read(path: Path) -> str:
    return path.read_text()


async def wait_for_http(
    http: httpx.AsyncClient, process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, read(log)
        with contextlib.suppress(httpx.TransportError):
            if (await http.get("/healthz")).status_code == 200:
                return
        assert time.monotonic() < deadline, "turnlog run did not serve HTTP in time"
        await asyncio.sleep(0.2)


async def dump_tables(store: EventStore) -> str:
    """Every table of the database schema as text, bytea columns in hex."""
    names = await store.pool.fetch(
        "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM"
        " information_schema.tables WHERE table_schema NOT IN ('pg_catalog',"
        " 'information_schema') AND table_type = 'BASE TABLE'"
    )
    dumps = []
    for (name,) in names:
        rows = await store.pool.fetch(f"SELECT row_to_json(t)::text FROM {name} t")
        dumps += [f"{name} {r[0]}" for r in rows]
    return "\n".join(dumps)


async def relayed_events(nats_url: str, prefix: str, count: int) -> list[bytes]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        stream = Subjects(prefix).stream_events

        async def enough() -> bool:
            return (await js.stream_info(stream)).state.messages >= count

        await until(enough)
        info = await js.stream_info(stream)
        return [
            (await js.get_msg(stream, seq)).data or b""
            for seq in range(info.state.first_seq, info.state.last_seq + 1)
        ]
    finally:
        await nc.close()


@pytest.mark.slow
async def test_connected_everywhere_and_the_token_is_nowhere_in_clear(
    cli_env: dict[str, str], store: EventStore, servers: Endpoints, prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "integrations_app.py"
    path.write_text(APP_FILE)
    env = cli_env | {"TURNLOG_API_KEYS": KEYS, "TURNLOG_LOG_LEVEL": "debug"}
    tokens = {who: f"{TOKEN}-{who}" for who in ("cli", "http", "client", "stdin")}
    log = tmp_path / "run.log"
    process = spawn_run(path, env, log)
    outputs: list[str] = []

    def turnlog_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        done = cli(env, *args, stdin=stdin)
        outputs.extend((done.stdout, done.stderr))
        return done

    notices = await nats.connect(servers.nats_url)
    announced = await notices.subscribe(Subjects(prefix).integrations_all())
    try:
        base = f"http://127.0.0.1:{env['TURNLOG_HTTP_PORT']}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            await wait_for_http(http, process, log)

            # the CLI: a token on the command line, another from stdin, with fields
            done = turnlog_cli(
                "integrations", "connect", "alice", "github", "--token", tokens["cli"]
            )
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip() == "connected github for user alice"
            done = turnlog_cli(
                "integrations", "connect", "dave", "jira", "--token", "-",
                "--field", "site=acme.atlassian.net", "--scope", "read", stdin=tokens["stdin"],
            )  # fmt: skip
            assert done.returncode == 0, done.stderr

            # HTTP: an admin key for anyone, a user's key for that user only
            admin = {"Authorization": f"Bearer {ADMIN}"}
            answer = await http.post(
                "/v1/integrations/bob/github",
                json={"credentials": {"token": tokens["http"]}, "scopes": ["repo"]},
                headers=admin,
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["connected_by"] == "operator:api"
            assert tokens["http"] not in answer.text
            alice = {"Authorization": f"Bearer {ALICE_KEY}"}
            answer = await http.post(
                "/v1/integrations/alice/gmail", json={"credentials": {"token": "g"}}, headers=alice
            )
            assert answer.status_code == 200 and answer.json()["connected_by"] == "user:alice"
            refused = await http.post(
                "/v1/integrations/bob/gmail", json={"credentials": {"token": "x"}}, headers=alice
            )
            assert refused.status_code == 403
            reader = {"Authorization": f"Bearer {READ}"}
            refused = await http.delete("/v1/integrations/bob/github", headers=reader)
            assert refused.status_code == 403
            bad = await http.post(
                "/v1/integrations/bob/git%20hub", json={"credentials": {"t": 1}}, headers=admin
            )
            assert bad.status_code == 400 and bad.json()["code"] == "invalid_request"

            # the producer client, through the runtime's responder
            client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
            try:
                await client.connect_integration(
                    "carol", "github", {"token": tokens["client"]}, actor="crm"
                )
                with pytest.raises(turnlog.ClientError, match="non-empty JSON object"):
                    await client.connect_integration("carol", "gmail", {})
                assert await client.disconnect_integration("carol", "github")
                assert not await client.disconnect_integration("carol", "github")
                await client.connect_integration("carol", "github", {"token": tokens["client"]})
            finally:
                await client.close()

            # handlers see them: a data handler's RequestContext.integrations
            mine = await http.get("/data/github", headers=alice)
            assert mine.json() == {"connected": ["github", "gmail"], "token": tokens["cli"]}

            listed = await http.get("/v1/integrations/alice", headers=alice)
            assert [i["type"] for i in listed.json()["items"]] == ["github", "gmail"]
            assert tokens["cli"] not in listed.text
            assert (await http.get("/v1/integrations/bob", headers=alice)).status_code == 403
            gone = await http.delete("/v1/integrations/alice/gmail", headers=alice)
            assert gone.status_code == 204
            gone = await http.delete("/v1/integrations/alice/gmail", headers=alice)
            assert gone.status_code == 404

        done = turnlog_cli("integrations", "list", "alice")
        assert done.returncode == 0 and done.stdout.split()[:2] == ["github", "connected"]
        done = turnlog_cli("integrations", "list", "dave", "--json")
        [jira] = msgspec.json.decode(done.stdout)["items"]
        assert (jira["type"], jira["scopes"], jira["erased"]) == ("jira", ["read"], False)
        done = turnlog_cli("integrations", "disconnect", "dave", "jira", "--reason", "left")
        assert done.returncode == 0 and "disconnected jira" in done.stdout
        done = turnlog_cli("integrations", "disconnect", "dave", "jira")
        assert done.returncode == 1
        done = turnlog_cli("integrations", "connect", "dave", "jira")
        assert done.returncode == 2 and "--token" in done.stderr

        service = Integrations(store)
        assert await service.for_user("alice") == {"github": {"token": tokens["cli"]}}
        assert await service.for_user("bob") == {"github": {"token": tokens["http"]}}
        assert await service.for_user("carol") == {"github": {"token": tokens["client"]}}
        assert await service.for_user("dave") == {}
        actors = await store.pool.fetch(
            "SELECT DISTINCT actor FROM turnlog_events WHERE type LIKE 'integration.%'"
        )
        assert {a[0] for a in actors} == {
            "operator:api", "user:alice", "producer:crm", "producer:producer",
            f"operator:{getpass.getuser()}",
        }  # fmt: skip

        # every change was announced, none with credentials
        notes = []
        with contextlib.suppress(nats.errors.TimeoutError):
            while True:
                notes.append((await announced.next_msg(timeout=1)).data)
        assert len(notes) == 9 and all(TOKEN.encode() not in n for n in notes)

        # the projector has seen it all (the timeline holds every event)
        last = await store.last_position()
        count = await store.pool.fetchval("SELECT count(*) FROM turnlog_events")

        async def projected() -> bool:
            low = await store.pool.fetchval(
                "SELECT min(position) FROM turnlog_projection_positions"
            )
            return bool(low is not None and low >= last)

        await until(projected)
        relayed = await relayed_events(servers.nats_url, prefix, count)
        withheld = [
            msgspec.json.decode(m) for m in relayed if b'"type":"integration.connected"' in m
        ]
        assert withheld and all(
            e["payload"]["credentials"] == {"_withheld": True} for e in withheld
        )
        tables = await dump_tables(store)
        assert "integration.connected" in tables  # the timeline, at least
        stored = await store.pool.fetch(
            "SELECT payload FROM turnlog_events WHERE type = 'integration.connected'"
        )
        assert len(stored) == 6 and all(sealed.parse(r[0]) is not None for r in stored)
    finally:
        await notices.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    run_log = read(log)
    assert "integration connected" in run_log  # it logs, with ids only
    for token in tokens.values():
        hits = await store.pool.fetchval(
            "SELECT count(*) FROM turnlog_events WHERE position($1::bytea IN payload) > 0",
            token.encode(),
        )
        assert hits == 0, token
        for where, text in (("tables", tables), ("run log", run_log), ("cli", "".join(outputs))):
            assert token not in text and token.encode().hex() not in text, where
        assert all(token.encode() not in m for m in relayed), "relayed events"
