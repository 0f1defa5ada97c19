"""A log from a version before the text policy, holding U+0000 in a message, a data key
and value and a block: every process starts and serves on it, and nothing is stopped."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import turnlog
from tests.conftest import API_KEY
from turnlog.projections.catalog import PROJECTIONS
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.postgres.eventstore import EventStore

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_nul_log.sql"
ECHO = Path(__file__).resolve().parents[1] / "apps" / "echo.py"
SESSION = "5e55a000-0000-4000-8000-000000000001"


@pytest.fixture
async def legacy(store: EventStore) -> AsyncIterator[EventStore]:
    """The test's database holding the old log (schema migrated by the store first)."""
    await store.pool.execute(FIXTURE.read_text())
    yield store


def turnlog_cli(
    env: dict[str, str], *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnlog", *args],
        env=env, input=stdin, text=True, capture_output=True, timeout=120, check=False,
    )  # fmt: skip


def spawn(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``turnlog ARGS`` in a process of its own, its logs (stderr) going to ``log``."""
    with log.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "turnlog", *args], env=env, stdout=subprocess.DEVNULL, stderr=err
        )


async def healthy(base: str, timeout: float = 60.0) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        for _ in range(int(timeout * 5)):
            try:
                response = await http.get("/healthz")
                body: dict[str, object] = response.json()
                if response.status_code == 200 and body["ok"]:
                    return body
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"not healthy within {timeout}s")


async def caught_up(http: httpx.AsyncClient, timeout: float = 60.0) -> None:
    """Wait until every projection has applied the whole log: being healthy does not wait
    for the projector, which starts from the beginning of the old log."""
    items: list[dict[str, object]] = []
    for _ in range(int(timeout * 10)):
        items = (await http.get("/v1/projections")).json()["items"]
        if len(items) == len(PROJECTIONS) and all(i["lag_events"] == 0 for i in items):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the projections did not catch up within {timeout}s: {items}")


async def test_turnlog_run_serves_a_log_holding_nul_characters(
    legacy: EventStore, cli_env: dict[str, str], servers: Endpoints, prefix: str, tmp_path: Path
) -> None:
    env = cli_env | {"TURNLOG_API_KEYS": f"{API_KEY}:read"}
    log = tmp_path / "run.log"
    process = spawn(env, log, "run", str(ECHO))
    base = f"http://127.0.0.1:{env['TURNLOG_HTTP_PORT']}"
    try:
        health = await healthy(base)
        assert health["failed_projections"] == [] and health["database"] == "ok"
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(base_url=base, headers=headers) as http:
            await caught_up(http)
            history = (await http.get(f"/v1/sessions/{SESSION}/history")).json()["items"]
            data = (await http.get(f"/v1/sessions/{SESSION}/data")).json()
            blocks = (await http.get(f"/v1/sessions/{SESSION}/blocks")).json()
        # projections hold U+FFFD where the log holds U+0000 (the log keeps its bytes)
        assert [h["text"] for h in history][:2] == ["a\ufffdb", "you said a\ufffdb"]
        assert data["data"]["key\ufffdwith nul"] == 1
        assert [b["block_id"] for b in blocks["items"]] == ["b\ufffd"]

        # the old session goes on (its aggregate still holds the U+0000 key as recorded)
        async with await turnlog.Client.connect(servers.nats_url, prefix=prefix) as client:
            session = client.session("legacy", session_id=SESSION, user={"id": "legacy-user"})
            assert (await session.send_message("more", timeout=60)).reply == "you said more"
        assert process.poll() is None, "turnlog run stopped"
        status = await asyncio.to_thread(turnlog_cli, env, "infra", "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "runtime legacy, relay, projector, api" in status.stdout
        for part in ("ingress", "router", "relay", "projector", "http", "queries", "beacon"):
            assert f"    {part:<10} running" in status.stdout, status.stdout
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    stderr = log.read_text()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr


async def test_status_verify_check_and_chat_work_on_it(
    legacy: EventStore, cli_env: dict[str, str]
) -> None:
    verify = turnlog_cli(cli_env, "audit", "verify", "--all", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    chat = turnlog_cli(cli_env, "chat", str(ECHO), "--session", SESSION, "--user", "legacy-user",
                       stdin="hello again\n")  # fmt: skip
    assert chat.returncode == 0, chat.stderr
    assert "app: you said hello again" in chat.stdout
    status = turnlog_cli(cli_env, "projections", "status", "--json")
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)
    assert {r["name"]: r["state"] for r in rows} == {r["name"]: "ok" for r in rows}
    check = turnlog_cli(cli_env, "audit", "check-projections", "--json")
    assert check.returncode == 0, check.stdout + check.stderr
