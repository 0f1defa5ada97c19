"""Owner keys (``org:<id>``) and user ids never meet: a user id from outside may not
start with ``org:`` or ``app:`` (an app's own user), on every entry; documents written
before keep their owners."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import pytest

import turnlog
from tests.conftest import API_KEY
from tests.helpers import inbound
from tests.integration.conftest import Start
from turnlog.contracts import bus
from turnlog.contracts.events import UserRef
from turnlog.projections.catalog import PROJECTIONS
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.http.api import http_app
from turnlog.services.adapters.http.app_routes import app_routes
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.projector.runner import Projector
from turnlog.services.adapters.postgres.queries import QueryService
from turnlog.services.app.access import Keys, parse_keys
from turnlog.services.app.sessions.outbound import NoDelivery
from turnlog.services.bootstrap.wiring import Wiring

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_owners_log.sql"
ECHO = Path(__file__).resolve().parents[1] / "apps" / "echo.py"
ADMIN = "owner-admin-key-0123456789"
BOB_KEY = "owner-bob-key-0123456789"


async def turnlog_cli(
    env: dict[str, str], *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "turnlog", *args],
        env=env, input=stdin, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def teams_app() -> turnlog.App:
    app = turnlog.App("teams")
    team = app.collection("team", scope="owner")
    mine = app.collection("mine", scope="user")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        seen = {
            "owner": session.user.owner_id,
            "team": sorted(d["_id"] for d in await team.find()),
            "mine": sorted(d["_id"] for d in await mine.find()),
        }
        await session.reply(msgspec.json.encode(seen).decode())

    @app.data("team", access="authenticated")
    async def listing(ctx: turnlog.RequestContext) -> Any:
        return sorted(d["_id"] for d in await ctx.db.team.find())

    return app


async def test_documents_written_by_the_previous_version_keep_their_owners(
    store: EventStore,
) -> None:
    await store.pool.execute(FIXTURE.read_text())
    projector = Projector(store, list(PROJECTIONS.values()))
    running = asyncio.create_task(projector.run())
    host = Wiring.postgres(store).host(teams_app(), NoDelivery())
    try:
        await projector.caught_up()
        seen = {}
        for user in (
            turnlog.UserInfo(id="alice", org_id="acme"),
            turnlog.UserInfo(id="bob"),
            turnlog.UserInfo(id="carol", org_id="acme"),  # new in the org: sees the org's
        ):
            result = await host.handle(inbound("what is mine?", user))
            seen[user.id] = msgspec.json.decode(result.reply)
        service = QueryService(store.pool)
        keys = Keys(parse_keys(f"{ADMIN}:admin,{BOB_KEY}:read:user=bob"))
        routes = app_routes(host.app, keys, store.pool, runtime=host.runtime)
        transport = httpx.ASGITransport(app=http_app(service, keys, routes))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            bob = await http.post(
                "/v1/collections/find",
                json={"app": "teams", "collection": "team"},
                headers={"Authorization": f"Bearer {BOB_KEY}"},
            )
            org = await http.get(
                "/data/team",
                headers={"Authorization": f"Bearer {ADMIN}", "X-Turnlog-User": "albert"},
            )
    finally:
        await host.stop()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert seen == {
        "alice": {"owner": "org:acme", "team": ["albert-m1", "alice-m0"], "mine": ["alice-m0"]},
        "bob": {"owner": "bob", "team": ["bob-m2"], "mine": ["bob-m2"]},
        "carol": {"owner": "org:acme", "team": ["albert-m1", "alice-m0"], "mine": []},
    }
    assert [d["document"]["_id"] for d in bob.json()["items"]] == ["bob-m2"]
    assert org.json() == ["albert-m1", "alice-m0"]


@pytest.mark.parametrize("user_id", ["org:acme", "app:teams"])
async def test_a_user_id_that_looks_like_an_owner_key_is_refused_at_every_entry(
    user_id: str,
    start_serving: Start,
    servers: Endpoints,
    prefix: str,
    store: EventStore,
    cli_env: dict[str, str],
) -> None:
    await start_serving(teams_app())
    # the bus: dead-lettered, no session made
    nc = await nats.connect(servers.nats_url)
    letters = await nc.subscribe(f"{prefix}.dlq.teams")
    message = bus.InboundMessage(
        message_id=uuid.uuid4().hex, user=UserRef(id=user_id), text="let me in"
    )
    await nc.jetstream().publish(f"{prefix}.in.teams.new", msgspec.json.encode(message))
    letter = msgspec.json.decode((await letters.next_msg(timeout=30)).data, type=bus.DeadLetter)
    await nc.close()
    assert letter.reason == "invalid_user" and user_id in letter.detail
    assert await store.pool.fetchval("SELECT count(*) FROM turnlog_events") == 0

    # the producer client: refused before anything is sent
    client = turnlog.Client(await nats.connect(servers.nats_url), Subjects(prefix))
    with pytest.raises(turnlog.ClientError, match="reserves"):
        client.session("teams", user={"id": user_id})
    await client.close()

    # data and endpoint handlers: an admin key acting for such a user
    keys = Keys(parse_keys(f"{ADMIN}:admin"))
    teams = teams_app()
    routes = app_routes(teams, keys, store.pool, runtime=Wiring.postgres(store).runtime(teams))
    transport = httpx.ASGITransport(app=http_app(QueryService(store.pool), keys, routes))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        acting = await http.get(
            "/data/team", headers={"Authorization": f"Bearer {ADMIN}", "X-Turnlog-User": user_id}
        )
    assert acting.status_code == 400 and "invalid_user" in acting.json()["message"]

    # the query API (HTTP and NATS): a key for such a user is refused at start
    env = cli_env | {"TURNLOG_API_KEYS": f"{API_KEY}:read:user={user_id}"}
    run = await turnlog_cli(env, "serve", "api")
    assert run.returncode == 2 and "reserves" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr

    # the terminal chat
    chat = await turnlog_cli(cli_env, "chat", str(ECHO), "--user", user_id, stdin="hi\n")
    assert chat.returncode != 0 and "reserves" in chat.stderr, chat.stderr
    assert "Traceback" not in chat.stderr
