"""``turnlog runtimes``: the live runtimes of an app as their processes report them (the
one consuming its messages, the one standing by), with their turns."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import pytest

import turnlog
from tests.integration.conftest import Start
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.bootstrap import health


def echo_app() -> turnlog.App:
    app = turnlog.App("counted")

    @app.message()
    async def on_message(session: turnlog.Session, msg: turnlog.Message) -> None:
        await session.reply(msg.text)

    return app


async def listed(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "turnlog", "runtimes", *args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def test_runtimes_lists_the_active_and_the_standby_runtime_of_an_app(
    start_serving: Start,
    servers: Endpoints,
    prefix: str,
    cli_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(health, "BEACON_EVERY", 0.2)
    empty = await listed(cli_env)
    assert empty.returncode == 0 and "no runtime serving" in empty.stdout, empty.stderr
    await start_serving(echo_app())
    await start_serving(echo_app(), relay=False)  # a second process's worth: it stands by
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        session = client.session("counted", user={"id": "u1"})
        for text in ("a", "b", "c"):
            await session.send_message(text)
    finally:
        await client.close()

    rows: list[dict[str, Any]] = []
    async with asyncio.timeout(20):
        while not (len(rows) == 2 and sum(r["turns"] for r in rows) == 3):
            await asyncio.sleep(0.3)
            done = await listed(cli_env, "--json")
            assert done.returncode == 0, done.stderr
            rows = json.loads(done.stdout)
    assert [(r["app"], r["active"]) for r in rows] == [("counted", True), ("counted", False)]
    assert (rows[0]["turns"], rows[1]["turns"]) == (3, 0)
    assert rows[0]["in_flight"] == 0 and rows[0]["process"] != rows[1]["process"]

    text = await listed(cli_env)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == "app counted"
    assert lines[1].startswith("  active ") and "3 turns since it started" in lines[1]
    assert lines[2].startswith("  standby ") and "0 turns since it started" in lines[2]
