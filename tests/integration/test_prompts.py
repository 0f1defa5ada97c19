"""Blocking prompts: a handler waits for an upload or an integration; the answer arrives
through the bus while other messages of the session queue behind the turn."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import turnlog
from tests.helpers import inbound
from tests.integration.conftest import Start
from turnlog.contracts import bus
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.nats.client import ClientError, ClientSession
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.app.rounds import Round
from turnlog.services.app.sessions.outbound import NoDelivery
from turnlog.services.bootstrap.wiring import Wiring
from turnlog.services.sdk.loader import load_app


def prompting_app(inbox: Path) -> turnlog.App:
    app = turnlog.App("prompts")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        if msg.text.startswith("csv"):
            timeout = float(msg.text.split()[1])
            try:
                upload = await session.prompt_file(
                    message="Upload a CSV export", accept=".csv,text/csv", timeout=timeout,
                    download_to=inbox,
                )  # fmt: skip
            except turnlog.FileUploadTimeout as e:
                await session.reply(f"no file: {e}")
                return
            assert upload.path is not None
            rows = upload.path.read_text().splitlines()
            await session.reply(f"Received {upload.name}: {len(rows)} rows, {upload.size} bytes")
        elif msg.text.startswith("github"):
            timeout = float(msg.text.split()[1])
            try:
                creds = await session.prompt_integration(
                    "github", reason="to read your repositories", timeout=timeout
                )
            except turnlog.IntegrationDeclined:
                await session.reply("fine, no GitHub then")
                return
            except turnlog.IntegrationTimeout:
                await session.reply("GitHub was not connected in time")
                return
            await session.reply(f"connected as {creds['login']}")
        else:
            await session.reply(f"echo {msg.text}")

    return app


async def plain_events(store: EventStore, session_id: str) -> list[tuple[str, dict[str, Any]]]:
    records = await store.keyring.unseal(await store.read_stream(session_id))
    return [(r.type, json.loads(r.payload)) for r in records]


async def prompt_shown(seen: list[Any], block_type: str) -> dict[str, Any]:
    """The payload of the first waiting prompt block of ``block_type`` (waits for it)."""
    async with asyncio.timeout(20):
        while True:
            for item in seen:
                if (
                    isinstance(item, bus.LiveBlock)
                    and item.block_type == block_type
                    and item.payload.get("status") == "waiting"
                ):
                    return item.payload
            await asyncio.sleep(0.02)


async def ask(
    session: ClientSession, text: str, block_type: str
) -> tuple[asyncio.Task[Round], dict[str, Any]]:
    """Send ``text`` (its turn runs on in the background) and wait until the turn shows
    a waiting prompt block of ``block_type``: the turn, and that block's payload."""
    seen: list[Any] = []
    turn = asyncio.create_task(session.send_message(text, on_event=seen.append))
    return turn, await prompt_shown(seen, block_type)


async def test_prompt_file_is_answered_by_an_upload_while_other_messages_wait(
    start_serving: Start, servers: Endpoints, prefix: str, store: EventStore, tmp_path: Path
) -> None:
    await start_serving(prompting_app(tmp_path))
    export = tmp_path / "export.csv"
    export.write_text("a,b\n1,2\n3,4\n")
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        session = client.session("prompts", user={"id": "u1"})
        asking, block = await ask(session, "csv 30", "file_upload")
        assert block["message"] == "Upload a CSV export" and block["status"] == "waiting"
        assert block["accept"] == ".csv,text/csv"
        # A message sent meanwhile queues behind the waiting turn.
        later = asyncio.create_task(session.send_message("meanwhile"))
        await asyncio.sleep(0.3)
        assert not later.done() and not asking.done()
        with pytest.raises(ClientError, match=r"accepts \.csv,text/csv, not x\.png \(image/png\)"):
            await session.upload(block["prompt_id"], {"name": "x.png", "data": b"\x89PNG"})
        assert not asking.done()  # still waiting for a file it accepts
        await session.upload(block["prompt_id"], {"path": str(export)})
        first = await asking
        assert first.reply == "Received export.csv: 3 rows, 12 bytes"
        assert (await later).reply == "echo meanwhile"
        assert (tmp_path / "export.csv").read_text() == "a,b\n1,2\n3,4\n"

        events = await plain_events(store, session.id)
        turn = [(t, p) for t, p in events if t != "session.started"][:7]
        assert [t for t, _ in turn] == [
            "session.message_received",
            "session.prompted",
            "session.block_shown",
            "session.prompt_received",
            "session.block_shown",
            "session.reply_sent",
            "session.turn_completed",
        ]
        prompted, received = turn[1][1], turn[3][1]
        assert prompted["kind"] == "file" and prompted["timeout"] == 30.0
        assert received["prompt_id"] == prompted["prompt_id"] == block["prompt_id"]
        assert received["file"]["name"] == "export.csv" and received["file"]["size"] == 12
        assert turn[4][1]["payload"]["status"] == "received"

        # The prompt is answered: a second upload for it is refused, clearly.
        with pytest.raises(ClientError, match=r"no prompt \w+ is waiting"):
            await session.upload(block["prompt_id"], {"path": str(export)})
    finally:
        await client.close()


CSV_APP = """
import turnlog

app = turnlog.App("uploads")


@app.message()
async def handle(session, msg):
    try:
        upload = await session.prompt_file(message="Upload a CSV", timeout=float(msg.text),
                                           download_to=INBOX)
    except turnlog.FileUploadTimeout:
        await session.reply("no file")
        return
    await session.reply(f"{upload.name}: {len(upload.path.read_text().splitlines())} rows")
"""


async def test_turns_with_prompts_rerun_from_the_record(
    start_serving: Start,
    servers: Endpoints,
    prefix: str,
    store: EventStore,
    tmp_path: Path,
    cli_env: dict[str, str],
) -> None:
    (tmp_path / "inbox").mkdir()
    app_file = tmp_path / "uploads.py"
    app_file.write_text(f"INBOX = {str(tmp_path / 'inbox')!r}\n" + CSV_APP)
    await start_serving(load_app(app_file))
    export = tmp_path / "export.csv"
    export.write_text("a\nb\nc\n")
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        session = client.session("uploads", user={"id": "u1"})
        asking, block = await ask(session, "30", "file_upload")
        await session.upload(block["prompt_id"], {"path": str(export)})
        assert (await asking).reply == "export.csv: 3 rows"
        assert (await session.send_message("0.3")).reply == "no file"
    finally:
        await client.close()

    def rerun(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "turnlog", "replay", session.id, "--rerun", str(path)],
            env=cli_env, text=True, capture_output=True, timeout=120, check=False,
        )  # fmt: skip

    same = rerun(app_file)
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.stdout.strip().endswith("2 of 2 turns re-run: identical")
    edited = tmp_path / "uploads_changed.py"
    edited.write_text(app_file.read_text().replace("rows", "lines"))
    changed = rerun(edited)
    assert changed.returncode == 1
    assert "diverged at turn 1" in changed.stdout
    assert '"text":"export.csv: 3 lines"' in changed.stdout


async def test_prompt_file_times_out(
    start_serving: Start, servers: Endpoints, prefix: str, store: EventStore, tmp_path: Path
) -> None:
    await start_serving(prompting_app(tmp_path))
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        session = client.session("prompts", user={"id": "u1"})
        round_ = await session.send_message("csv 0.5")
        assert round_.reply == "no file: no file was uploaded within 0.5 s"
        types = [t for t, _ in await plain_events(store, session.id)]
        assert types[2:6] == [
            "session.prompted",
            "session.block_shown",
            "session.prompt_timed_out",
            "session.block_shown",
        ]
        blocks = [p for t, p in await plain_events(store, session.id) if t == "session.block_shown"]
        assert blocks[-1]["payload"]["status"] == "timed_out"
    finally:
        await client.close()


async def test_prompt_integration_declined_and_timed_out(
    start_serving: Start, servers: Endpoints, prefix: str, store: EventStore, tmp_path: Path
) -> None:
    await start_serving(prompting_app(tmp_path))
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        session = client.session("prompts", user={"id": "u1"})
        asking, block = await ask(session, "github 30", "integration")
        assert block["integration"] == "github" and block["blocking"] is True
        await session.decline(block["prompt_id"])
        assert (await asking).reply == "fine, no GitHub then"
        round_ = await session.send_message("github 0.5")
        assert round_.reply == "GitHub was not connected in time"
        types = [t for t, _ in await plain_events(store, session.id)]
        assert "session.prompt_declined" in types and "session.prompt_timed_out" in types
        # A file is no answer to an integration prompt (and vice versa).
        asking, block = await ask(session, "github 30", "integration")
        with pytest.raises(ClientError, match="is answered by connecting or declining"):
            await session.upload(block["prompt_id"], {"name": "x.txt", "data": b"x"})
        await session.decline(block["prompt_id"])
        assert (await asking).reply == "fine, no GitHub then"
    finally:
        await client.close()


async def test_without_resumption_a_prompt_cut_off_by_a_stop_is_recorded_interrupted(
    store: EventStore, tmp_path: Path
) -> None:
    app = prompting_app(tmp_path)
    app.resume_turns = (
        False  # resumed, the turn would prompt again (tests/unit/test_durable_turns.py)
    )
    user = turnlog.UserInfo(id="u1")
    sid = uuid.uuid4()
    host = Wiring.postgres(store).host(app, NoDelivery())
    turn = asyncio.create_task(host.handle(inbound("csv 60", user, sid)))
    async with asyncio.timeout(20):
        while "session.prompted" not in [t for t, _ in await plain_events(store, str(sid))]:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert host.prompts.waiting()
    turn.cancel()  # the process stops while the prompt waits
    with pytest.raises(asyncio.CancelledError):
        await turn

    after = Wiring.postgres(store).host(app, NoDelivery())
    try:
        result = await after.handle(inbound("hello", user, sid))
    finally:
        await after.stop()
    assert result.reply == "echo hello"
    events = await plain_events(store, str(sid))
    types = [t for t, _ in events]
    i = types.index("session.prompt_interrupted")
    assert types[i : i + 3] == [
        "session.prompt_interrupted",
        "session.block_shown",  # the prompt's block, marked interrupted
        "session.turn_interrupted",
    ]
    assert events[i + 1][1]["payload"]["status"] == "interrupted"
    prompted = next(p for t, p in events if t == "session.prompted")
    assert events[i][1]["prompt_id"] == prompted["prompt_id"]


async def test_prompt_integration_goes_on_when_the_user_connects(
    start_serving: Start, servers: Endpoints, prefix: str, store: EventStore, tmp_path: Path
) -> None:
    token = f"ghp_{uuid.uuid4().hex}"
    await start_serving(prompting_app(tmp_path))
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        session = client.session("prompts", user={"id": "carol"})
        asking, block = await ask(session, "github 30", "integration")
        assert block["reason"] == "to read your repositories"
        await client.connect_integration("carol", "github", {"login": "carol-gh", "token": token})
        assert (await asking).reply == "connected as carol-gh"
        # Connected now: the next prompt returns the credentials at once, without a card.
        before = len(await store.read_stream(session.id))
        assert (await session.send_message("github 30")).reply == "connected as carol-gh"
        later = [t for t, _ in (await plain_events(store, session.id))[before:]]
        assert "session.prompted" not in later
    finally:
        await client.close()
    events = await plain_events(store, session.id)
    received = next(p for t, p in events if t == "session.prompt_received")
    assert received["integration"] == "github" and received["file"] is None
    blocks = [p["payload"] for t, p in events if t == "session.block_shown"]
    assert blocks[-1]["status"] == "connected" and blocks[-1]["connected"] is True
    # The credentials are on no session event, not even sealed.
    raw = b"".join(r.payload for r in await store.read_stream(session.id))
    assert token.encode() not in raw and b"carol-gh" not in raw


async def test_a_runtime_stopping_ends_waiting_prompts_instead_of_waiting_for_them(
    start_serving: Start, servers: Endpoints, prefix: str, store: EventStore, tmp_path: Path
) -> None:
    serving = await start_serving(prompting_app(tmp_path))
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        session = client.session("prompts", user={"id": "u1"})
        asking, _ = await ask(session, "csv 300", "file_upload")
        with pytest.raises(ClientError, match="is not a prompt id"):
            await session.upload("not a prompt id", {"name": "x", "data": b"x"})
        started = asyncio.get_running_loop().time()
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        assert asyncio.get_running_loop().time() - started < 20  # not the prompt's 300 s
        asking.cancel()
    finally:
        await client.close()
    events = await plain_events(store, session.id)
    types = [t for t, _ in events]
    assert "session.prompt_interrupted" in types
    reply = next(p for t, p in events if t == "session.reply_sent")
    assert reply["text"] == "no file: the runtime stopped before a file was uploaded"
    assert types[-1] == "session.turn_completed"
