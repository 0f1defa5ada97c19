"""``turnlog runtimes``: the live runtimes of an app as their processes report them (each
with the partitions it owns; without partitions, the one consuming its messages and the
one standing by), with their turns."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import nats
import pytest

import turnlog
from tests.integration.conftest import Start
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.nats.partitioning import transforms
from turnlog.services.bootstrap import health, serve


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


async def rows_when(env: dict[str, str], done: Callable[[list[dict[str, Any]]], bool]) -> Any:
    """``turnlog runtimes --json`` once it shows what ``done`` waits for."""
    rows: list[dict[str, Any]] = []
    async with asyncio.timeout(20):
        while not done(rows):
            await asyncio.sleep(0.3)
            listing = await listed(env, "--json")
            assert listing.returncode == 0, listing.stderr
            rows = json.loads(listing.stdout)
    return rows


async def serve_two_and_send_three(start_serving: Start, servers: Endpoints, prefix: str) -> None:
    await start_serving(echo_app())
    await start_serving(echo_app(), relay=False)  # a second process's worth
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        session = client.session("counted", user={"id": "u1"})
        for text in ("a", "b", "c"):
            await session.send_message(text)
    finally:
        await client.close()


async def test_runtimes_lists_the_runtimes_of_an_app_with_the_partitions_each_owns(
    start_serving: Start,
    servers: Endpoints,
    prefix: str,
    cli_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(health, "BEACON_EVERY", 0.2)
    nc = await nats.connect(servers.nats_url)
    can = transforms(nc)
    await nc.close()
    if not can:
        pytest.skip("this NATS server has no subject transforms (before 2.10)")
    await serve_two_and_send_three(start_serving, servers, prefix)

    def split(rows: list[dict[str, Any]]) -> bool:
        shares = sorted(len(r["partitions"]) for r in rows)
        return shares == [8, 8] and sum(r["turns"] for r in rows) == 3

    rows = await rows_when(cli_env, split)
    assert [(r["app"], r["active"]) for r in rows] == [("counted", True), ("counted", True)]
    assert sorted(rows[0]["partitions"] + rows[1]["partitions"]) == list(range(16))
    assert rows[0]["process"] != rows[1]["process"]

    text = await listed(cli_env)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == "app counted"
    assert all(line.startswith("  active ") and ", partitions " in line for line in lines[1:])


async def test_without_partitions_one_runtime_is_active_and_the_other_stands_by(
    start_serving: Start,
    servers: Endpoints,
    prefix: str,
    cli_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(health, "BEACON_EVERY", 0.2)
    monkeypatch.setattr(serve, "transforms", lambda nc: False)  # as on NATS before 2.10
    empty = await listed(cli_env)
    assert empty.returncode == 0 and "no runtime serving" in empty.stdout, empty.stderr
    await serve_two_and_send_three(start_serving, servers, prefix)

    rows = await rows_when(cli_env, lambda rows: sum(r["turns"] for r in rows) == 3)
    assert [(r["app"], r["active"]) for r in rows] == [("counted", True), ("counted", False)]
    assert (rows[0]["turns"], rows[1]["turns"]) == (3, 0)
    assert rows[0]["in_flight"] == 0 and rows[0]["process"] != rows[1]["process"]
    assert rows[0]["partitions"] == rows[1]["partitions"] == []

    text = await listed(cli_env)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == "app counted"
    assert lines[1].startswith("  active ") and "3 turns since it started" in lines[1]
    assert lines[2].startswith("  standby ") and "0 turns since it started" in lines[2]
    said = capsys.readouterr().out
    assert said.count("one runtime of the app consumes its messages at a time") == 2, said
