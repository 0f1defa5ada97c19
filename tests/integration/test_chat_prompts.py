"""``turnlog chat`` answering blocking prompts: a file uploaded with ``/file PATH``, an
integration declined with ``/decline``, wrong lines and failed answers explained."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.integration.test_chat import run

APP = """
import turnlog

app = turnlog.App("asker")


@app.message()
async def handle(session, msg):
    if msg.text.startswith("csv"):
        upload = await session.prompt_file(message="Upload a CSV", accept=".csv", timeout=30)
        await session.reply(f"Received {upload.name} ({upload.size} bytes)")
    elif msg.text == "github":
        try:
            await session.prompt_integration(
                "github", reason="to read your repositories", timeout=30
            )
        except turnlog.IntegrationDeclined as e:
            await session.reply(f"no GitHub: {e}")
            return
        await session.reply("GitHub connected")
    elif msg.text == "hurry":
        try:
            await session.prompt_file(message="Quick, a file", timeout=1)
        except turnlog.FileUploadTimeout:
            await session.reply("too late")
    else:
        await session.reply(f"echo {msg.text}")
"""


def app_file(tmp_path: Path) -> Path:
    path = tmp_path / "asker.py"
    path.write_text(APP)
    return path


def export_csv(tmp_path: Path) -> Path:
    path = tmp_path / "export.csv"
    path.write_text("a,b\n1,2\n3,4\n")  # 12 bytes
    return path


def blocks(stdout: str) -> list[tuple[str, dict[str, object]]]:
    found = re.findall(r"^block: (\S+) \S+ (.*)$", stdout, re.M)
    return [(kind, json.loads(payload)) for kind, payload in found]


def test_a_file_prompt_is_shown_and_answered_with_slash_file(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    csv = export_csv(tmp_path)
    result = run(
        cli_env, "chat", str(app_file(tmp_path)), stdin=f"csv please\n/file {csv}\nthanks\n"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 5, result.stdout
    assert lines[0] == "prompt: file_upload Upload a CSV"  # as the turn starts waiting
    assert lines[1].startswith("block: file_upload prompt:")  # then the turn's record
    assert lines[2].startswith("block: file_upload prompt:")
    assert lines[3:] == [
        "app: Received export.csv (12 bytes)",
        "app: echo thanks",  # the line after the answer is a message again
    ]
    shown = blocks(result.stdout)
    assert [(kind, p["status"]) for kind, p in shown] == [
        ("file_upload", "waiting"),
        ("file_upload", "received"),
    ]
    assert shown[0][1]["message"] == "Upload a CSV" and shown[0][1]["accept"] == ".csv"
    assert shown[1][1]["file"] == "export.csv" and shown[1][1]["size"] == 12
    assert "turnlog:" not in result.stderr


def test_an_integration_prompt_is_declined_with_slash_decline(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    result = run(cli_env, "chat", str(app_file(tmp_path)), stdin="github\n/decline\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "prompt: integration github to read your repositories"
    assert lines[-1] == "app: no GitHub: the user declined to connect github"
    assert [(kind, p["status"]) for kind, p in blocks(result.stdout)] == [
        ("integration", "waiting"),
        ("integration", "declined"),
    ]


def test_wrong_lines_and_failed_answers_are_explained_and_the_prompt_still_waits(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    csv = export_csv(tmp_path)
    missing = tmp_path / "missing.csv"
    stdin = f"csv\nhello\n/decline\n/file {missing}\n\n/file {csv}\n"
    result = run(cli_env, "chat", str(app_file(tmp_path)), stdin=stdin)
    assert result.returncode == 0, result.stderr
    hints = re.findall(r"^turnlog: (.*)$", result.stderr, re.M)
    assert hints == [
        "the app waits for a file: '/file PATH' uploads it",  # hello
        "the app waits for a file: '/file PATH' uploads it",  # /decline
        f"cannot read {missing}: No such file or directory",
    ]
    assert result.stdout.splitlines()[0] == "prompt: file_upload Upload a CSV"
    assert "app: Received export.csv (12 bytes)" in result.stdout.splitlines()
    assert "echo hello" not in result.stdout  # answered nothing, sent nothing

    declined_wrong = run(
        cli_env,
        "chat",
        str(app_file(tmp_path)),
        "--user",
        "alice",
        stdin=f"github\n/file {csv}\nno\n/decline\n",
    )
    assert declined_wrong.returncode == 0, declined_wrong.stderr
    expected = (
        "turnlog: the app waits for github to be connected: '/decline' declines, or connect "
        "it (turnlog integrations connect alice github --token …)"
    )
    assert declined_wrong.stderr.count(expected) == 2, declined_wrong.stderr
    assert declined_wrong.stdout.splitlines()[-1].startswith("app: no GitHub")


def test_end_of_input_while_a_prompt_waits_lets_the_turn_time_out(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    result = run(cli_env, "chat", str(app_file(tmp_path)), stdin="hurry\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "prompt: file_upload Quick, a file"
    assert result.stdout.splitlines()[-1] == "app: too late"
    assert [p["status"] for _, p in blocks(result.stdout)] == ["waiting", "timed_out"]
    assert "end of input; the prompt waits until the turn ends" in result.stderr


def test_interactive_chat_shows_prompts_and_reads_their_answers(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    import pty
    import select
    import time

    csv = export_csv(tmp_path)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "turnlog", "chat", str(app_file(tmp_path))],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=cli_env,
        close_fds=True,
    )
    os.close(follower)
    seen, mark = b"", 0

    def read_until(marker: bytes, timeout: float = 30) -> None:
        """Wait for ``marker`` after the last one waited for."""
        nonlocal seen, mark
        deadline = time.monotonic() + timeout
        while marker not in seen[mark:] and time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                seen += os.read(leader, 4096)
        assert marker in seen[mark:], seen.decode(errors="replace")
        mark = seen.index(marker, mark) + len(marker)

    try:
        read_until(b"you>")
        os.write(leader, b"csv\n")
        read_until(b"to upload")
        read_until(b"you>")
        os.write(leader, b"hi\n")
        read_until(b"uploads it")
        read_until(b"you>")
        os.write(leader, f"/file {csv}\n".encode())
        read_until(b"Received export.csv (12 bytes)")
        read_until(b"you>")
        os.write(leader, b"hurry\n")  # a prompt that times out while its answer is awaited
        read_until(b"to upload")
        read_until(b"you>")
        read_until(b"too late")
        read_until(b"you>")  # asked again, below the turn's output
        os.write(leader, b"after\n")  # and the line typed there is the next message
        read_until(b"echo after")
        read_until(b"you>")
        os.write(leader, b"\x04")  # Ctrl-D leaves
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    text = seen.decode()
    assert (
        "\033[2m\033[1mapp asks for a file: Upload a CSV (.csv) — '/file PATH' to upload\033[0m"
        in text
    )
