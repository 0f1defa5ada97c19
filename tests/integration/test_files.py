"""Files: uploads kept in the JetStream object store, referenced by URL, fetched by handlers."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import nats
import pytest

import turnlog
from tests.integration.conftest import Start
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.nats.client import ClientError
from turnlog.services.adapters.nats.files import FileError, FileStore
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.adapters.postgres.eventstore import EventStore


def reader_app(tmp_path: Path) -> turnlog.App:
    app = turnlog.App("reader")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        lines = []
        for attachment in msg.attachments:
            saved = await attachment.download(tmp_path / "inbox")
            digest = hashlib.sha256(saved.read_bytes()).hexdigest()[:12]
            lines.append(f"{attachment.name} {attachment.size} {attachment.content_type} {digest}")
        await session.reply("\n".join(lines) or f"no files with {msg.text!r}")

    return app


async def test_an_uploaded_attachment_is_downloaded_from_the_object_store(
    start_serving: Start, servers: Endpoints, prefix: str, store: EventStore, tmp_path: Path
) -> None:
    (tmp_path / "inbox").mkdir()
    big = tmp_path / "report.csv"
    big.write_bytes(os.urandom(3 * 1024 * 1024 + 17))  # several object store chunks
    await start_serving(reader_app(tmp_path))
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        session = client.session("reader", user={"id": "u1"})
        round_ = await session.send_message(
            "two files",
            files=[
                {"path": str(big)},
                {"name": "note.txt", "data": b"hello", "content_type": "text/plain"},
            ],
        )
        assert round_.outcome == "ok"
        assert round_.reply.splitlines() == [
            f"report.csv {big.stat().st_size} text/csv "
            + hashlib.sha256(big.read_bytes()).hexdigest()[:12],
            "note.txt 5 text/plain " + hashlib.sha256(b"hello").hexdigest()[:12],
        ]
        assert (tmp_path / "inbox" / "report.csv").read_bytes() == big.read_bytes()
        received = (await store.read_stream(session.id))[1]
        attachments = json.loads(received.payload)["attachments"]
        assert [a["name"] for a in attachments] == ["report.csv", "note.txt"]
        bucket = Subjects(prefix).bucket_files
        assert all(a["url"].startswith(f"nats-object://{bucket}/") for a in attachments)
        assert big.read_bytes()[:64] not in received.payload  # the log holds the reference

        # The object is in the real object store, not in the event.
        nc = await nats.connect(servers.nats_url)
        try:
            obs = await nc.jetstream().object_store(bucket)
            object_id = attachments[1]["url"].rsplit("/", 1)[1]
            assert (await obs.get(object_id)).data == b"hello"
        finally:
            await nc.close()
    finally:
        await client.close()


async def test_size_limits_and_missing_files_are_clear_errors(
    start_serving: Start, servers: Endpoints, prefix: str, tmp_path: Path
) -> None:
    (tmp_path / "inbox").mkdir()
    await start_serving(reader_app(tmp_path))
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix, max_file_bytes=1024)
    try:
        session = client.session("reader", user={"id": "u1"})
        with pytest.raises(ClientError, match=r"big.bin is 2.0 KiB; files may be at most 1.0 KiB"):
            await session.send_message("x", files=[{"name": "big.bin", "data": b"0" * 2048}])
        with pytest.raises(ClientError, match="cannot read"):
            await session.send_message("x", files=[{"path": str(tmp_path / "nope.txt")}])
        with pytest.raises(ClientError, match="a file needs a path, data"):
            await session.send_message("x", files=[{"name": "what"}])
        # A reference to an object that is gone: the handler's download fails clearly.
        gone = await session.send_message(
            "x",
            files=[{"name": "gone.txt", "url": f"nats-object://{Subjects(prefix).bucket_files}/0"}],
        )
        assert gone.outcome == "failed"
        assert gone.events[-1].payload["error_type"] == "FileError"
        assert "no file nats-object://" in gone.events[-1].payload["error_message"]
    finally:
        await client.close()

    nc = await nats.connect(servers.nats_url)
    try:
        other = FileStore(nc.jetstream(), "ELSEWHERE")
        with pytest.raises(FileError, match="is not a file of bucket 'ELSEWHERE'"):
            await other.read(f"nats-object://{Subjects(prefix).bucket_files}/x")
    finally:
        await nc.close()


async def test_outside_the_runtime_download_says_where_files_can_be_fetched() -> None:
    attachment = turnlog.Attachment(name="a.txt", url="nats-object://TURNLOG_FILES/abc")
    with pytest.raises(FileError, match="no file store in this process"):
        await attachment.download(Path("/tmp"))


def test_chat_sends_a_file_with_slash_file(cli_env: dict[str, str], tmp_path: Path) -> None:
    app = tmp_path / "sizes.py"
    app.write_text(
        "import turnlog\n"
        "app = turnlog.App('sizes')\n"
        "@app.message()\n"
        "async def handle(session, msg):\n"
        f"    saved = [await a.download({str(tmp_path)!r}) for a in msg.attachments]\n"
        "    await session.reply(f'{msg.text}: ' + ', '.join(p.read_text() for p in saved))\n"
    )
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "hello.txt").write_text("hello from a file")
    out = subprocess.run(
        [sys.executable, "-m", "turnlog", "chat", str(app)],
        input=f"/file {tmp_path / 'in' / 'hello.txt'} read this\n/file {tmp_path}/none.txt\n",
        env=cli_env, text=True, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["app: read this: hello from a file"]
    assert "cannot read" in out.stderr


async def test_downloads_stay_in_their_directory_and_in_the_file_store(
    start_serving: Start, servers: Endpoints, prefix: str, tmp_path: Path
) -> None:
    inbox, secret = tmp_path / "inbox", tmp_path / "secret.txt"
    inbox.mkdir()
    secret.write_text("server-side secret")
    app = turnlog.App("careful")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        try:
            saved = await msg.attachments[0].download(inbox)
        except FileError as e:
            await session.reply(f"refused: {e}")
            return
        await session.reply(f"saved {saved.relative_to(tmp_path)}")

    await start_serving(app)
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    try:
        session = client.session("careful", user={"id": "u1"})
        sneaky = await session.send_message("x", files=[{"name": "../escaped.txt", "data": b"x"}])
        assert sneaky.reply == "saved inbox/escaped.txt"
        assert not (tmp_path / "escaped.txt").exists()
        local = await session.send_message("x", files=[{"name": "s.txt", "url": secret.as_uri()}])
        assert local.reply.startswith("refused: cannot download 'file://")
        assert "it is not in turnlog's file store" in local.reply
        bad = await session.send_message("x", files=[{"name": "..", "data": b"x"}])
        assert bad.reply == "refused: '..' is no file name to save under"
    finally:
        await client.close()
