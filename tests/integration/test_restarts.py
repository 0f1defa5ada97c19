"""PostgreSQL and NATS restarted under load: `turnlog run` survives both without a
manual restart, and every message is answered exactly once, in order.

The servers are this test's own embedded ones (it stops and starts them), whatever
servers the rest of the suite uses."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import msgspec
import nats
import pytest
from nats.aio.client import Client as NATS

from tests.conftest import new_home
from turnlog.contracts import bus
from turnlog.contracts.events import UserRef
from turnlog.services.adapters.embedded.processes import free_port
from turnlog.services.adapters.embedded.servers import EmbeddedInfra

ECHO = Path(__file__).resolve().parents[1] / "apps" / "echo.py"
SESSIONS = 5


@dataclass
class Own:
    infra: EmbeddedInfra
    database_url: str
    nats_url: str
    pg_port: int
    nats_port: int


@pytest.fixture
def own() -> Iterator[Own]:
    home = new_home()
    infra = EmbeddedInfra(home)
    try:
        status = infra.acquire()
        assert status.postgres and status.nats
        yield Own(
            infra,
            status.postgres.url,
            status.nats.url,
            status.postgres.port,
            status.nats.port,
        )
    finally:
        infra.down(force=True)
        shutil.rmtree(home, ignore_errors=True)


@dataclass
class Load:
    """Messages sent for ``SESSIONS`` sessions, each session's in order."""

    sent: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    phases: Counter[str] = field(default_factory=Counter)
    phase: str = "before"
    stop: bool = False


async def produce(nc: NATS, load: Load, session_id: str) -> None:
    """Publish one message every 40 ms until told to stop; a publish that fails (NATS
    away) is sent again with the same id until JetStream has it (its dedupe drops a
    second copy)."""
    js = nc.jetstream()
    n = 0
    while not load.stop:
        n += 1
        message = bus.InboundMessage(
            message_id=f"{session_id[:8]}-{n}",
            session_id=session_id,
            user=UserRef(id=f"user-{session_id[:4]}"),
            text=f"message {n}",
        )
        data = msgspec.json.encode(message)
        while True:
            try:
                await js.publish(
                    f"r.in.legacy.{session_id}", data, headers={"Nats-Msg-Id": message.message_id},
                    timeout=2,
                )  # fmt: skip
                break
            except Exception:
                await asyncio.sleep(0.2)
        load.sent[session_id].append(message.message_id)
        load.phases[load.phase] += 1
        await asyncio.sleep(0.04)


async def _quiet(error: Exception) -> None:
    """The producer's own reconnects are expected here."""


def spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "turnlog", "run", str(ECHO)],
            env=env, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip


async def turns(database_url: str) -> dict[str, list[tuple[str, str]]]:
    """Each session's (type, message id) of messages, replies and turn ends, in order."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT stream_id, type, correlation_id FROM turnlog_events WHERE type IN"
            " ('session.message_received', 'session.reply_sent', 'session.turn_completed',"
            " 'session.turn_interrupted') ORDER BY stream_id, version"
        )
    finally:
        await conn.close()
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for r in rows:
        out[r[0]].append((r[1].removeprefix("session."), r[2]))
    return out


async def healthy(base: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base, timeout=3) as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.25)
    return False


def stopped(process: subprocess.Popen[bytes], log: Path, within: float = 60) -> None:
    """Wait for ``process`` to end after its SIGTERM; one that does not is killed (never
    left running) and the test fails with the end of its log."""
    try:
        process.wait(timeout=within)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
        raise AssertionError(
            f"turnlog run did not stop within {within:g} s of SIGTERM:\n" + log.read_text()[-4000:]
        ) from None


async def test_postgres_and_nats_restarts_under_load_lose_and_double_nothing(
    own: Own, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **dict(__import__("os").environ),
        "TURNLOG_DATABASE_URL": own.database_url,
        "TURNLOG_NATS_URL": own.nats_url,
        "TURNLOG_HOME": str(tmp_path / "home"),
        "TURNLOG_SUBJECT_PREFIX": "r",
        "TURNLOG_HTTP_PORT": str(port),
        "TURNLOG_ACK_WAIT": "5",
        "TURNLOG_LOG_LEVEL": "info",
    }
    log = tmp_path / "run.log"
    process = spawn(env, log)
    base = f"http://127.0.0.1:{port}"
    load = Load()
    nc = await nats.connect(
        own.nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2, error_cb=_quiet
    )
    try:
        assert await healthy(base, 60), log.read_text()
        producers = [
            asyncio.create_task(produce(nc, load, str(uuid.uuid4()))) for _ in range(SESSIONS)
        ]
        await asyncio.sleep(3)
        load.phase = "postgres down"
        await asyncio.to_thread(own.infra.postgres.stop)
        await asyncio.sleep(3)
        await asyncio.to_thread(own.infra.postgres.start, own.pg_port)
        load.phase = "between"
        await asyncio.sleep(4)
        load.phase = "nats down"
        await asyncio.to_thread(own.infra.nats.stop)
        await asyncio.sleep(3)
        await asyncio.to_thread(own.infra.nats.start, own.nats_port)
        load.phase = "after"
        await asyncio.sleep(4)
        load.stop = True
        await asyncio.gather(*producers)
        sent = sum(len(ids) for ids in load.sent.values())

        deadline = time.monotonic() + 120
        while True:  # every message sent has its turn completed
            done = await turns(own.database_url)
            completed = sum(1 for s in done.values() for kind, _ in s if kind == "turn_completed")
            if completed >= sent or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert process.poll() is None, "turnlog run stopped:\n" + log.read_text()[-3000:]
        assert await healthy(base, 60), "not healthy again:\n" + log.read_text()[-3000:]
    finally:
        load.stop = True
        await nc.close()
        process.send_signal(signal.SIGTERM)
        stopped(process, log)

    for session_id, ids in load.sent.items():
        recorded = done[session_id]
        expected = [
            kind for mid in ids for kind in ("message_received", "reply_sent", "turn_completed")
        ]
        assert [kind for kind, _ in recorded] == expected, f"session {session_id}: {recorded}"
        assert [mid for kind, mid in recorded if kind == "message_received"] == ids  # in order
    logs = log.read_text()
    assert "Traceback" not in logs, logs[-5000:]
    print(f"\nsent {sent} messages: {dict(load.phases)}; each answered once, in order")
