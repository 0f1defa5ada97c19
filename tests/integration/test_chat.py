"""``turnlog chat`` as a person or a script uses it: real processes, a real database."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTES = ROOT / "examples" / "notes.py"
COPILOT = ROOT / "examples" / "support_copilot.py"


def run(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnlog", *args],
        input=stdin,
        env=env,
        text=True,
        capture_output=True,
        timeout=120,
        check=False,
    )


def session_of(stderr: str) -> str:
    found = re.search(r"^session ([0-9a-f-]{36})$", stderr, re.M)
    assert found, stderr
    return found.group(1)


def test_notes_remembered_across_processes_and_listed_by_events(cli_env: dict[str, str]) -> None:
    first = run(
        cli_env,
        "chat",
        str(NOTES),
        "--user",
        "bob",
        stdin="remember buy coffee\nremember send proposal\nnotes\nhistory\n",
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "app: Noted: buy coffee (1 in total)",
        "app: Noted: send proposal (2 in total)",
        "app: 1. buy coffee\\n2. send proposal",
        "app: user: remember buy coffee\\napp: Noted: buy coffee (1 in total)\\n"
        "user: remember send proposal\\napp: Noted: send proposal (2 in total)\\n"
        "user: notes\\napp: 1. buy coffee\\n2. send proposal",
    ]
    session_id = session_of(first.stderr)

    second = run(
        cli_env,
        "chat",
        str(NOTES),
        "--session",
        session_id,
        "--user",
        "bob",
        stdin="notes\nwhat now?\n",
    )
    assert second.returncode == 0, second.stderr
    assert session_of(second.stderr) == session_id
    assert second.stdout.splitlines() == [
        "app: 1. buy coffee\\n2. send proposal",
        "notify: Thinking...",
        "app: I keep notes. Try 'remember what now?'.",
    ]

    events = run(cli_env, "events", session_id)
    assert events.returncode == 0, events.stderr
    types = [line.split()[1] for line in events.stdout.splitlines()]
    assert types[0] == "session.started"
    assert types.count("session.message_received") == 6
    assert types.count("session.turn_completed") == 6
    assert types.count("session.data_set") == 2  # one per turn that changed the notes
    assert '"text":"remember buy coffee"' in events.stdout
    assert '"value":["buy coffee","send proposal"]' in events.stdout
    assert '"streamed":true' in events.stdout


def test_support_copilot_uses_the_conversation(cli_env: dict[str, str]) -> None:
    result = run(
        cli_env,
        "chat",
        str(COPILOT),
        stdin="My invoice is wrong\nstream: refund policy\nsync my mailbox\n",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "notify: Thinking..."
    assert lines[1].startswith(
        "app: [gpt-4o-mini] You asked: 'My invoice is wrong'. I can see 0 earlier"
    )
    assert lines[2] == "notify: Thinking..."
    assert "You asked: 'stream: refund policy'. I can see 1 earlier" in lines[3]
    assert lines[4].startswith(
        'block: task task:mailbox-sync {"task_id":"mailbox-sync","message":"Mailbox sync started"'
    )


def test_bad_app_files_fail_clearly(cli_env: dict[str, str], tmp_path: Path) -> None:
    missing = run(cli_env, "chat", str(tmp_path / "nope.py"))
    assert missing.returncode == 1 and "no app file at" in missing.stderr
    (tmp_path / "noapp.py").write_text("x = 1\n")
    no_app = run(cli_env, "chat", str(tmp_path / "noapp.py"))
    assert no_app.returncode == 1 and "defines no turnlog.App" in no_app.stderr
    (tmp_path / "broken.py").write_text("import turnlog\nraise RuntimeError('bad config')\n")
    broken = run(cli_env, "chat", str(tmp_path / "broken.py"))
    assert broken.returncode == 1
    assert "importing" in broken.stderr and "RuntimeError: bad config" in broken.stderr
    (tmp_path / "nohandler.py").write_text("import turnlog\napp = turnlog.App('x')\n")
    no_handler = run(cli_env, "chat", str(tmp_path / "nohandler.py"), stdin="hi\n")
    assert no_handler.returncode == 1 and "no @app.message() handler" in no_handler.stderr


def test_interactive_chat_on_a_terminal_streams_and_dims_notifications(
    cli_env: dict[str, str],
) -> None:
    import os
    import pty
    import select
    import time

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "turnlog", "chat", str(NOTES)],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=cli_env,
        close_fds=True,
    )
    os.close(follower)
    seen = b""

    def read_until(marker: bytes, timeout: float = 30) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                seen += os.read(leader, 4096)
        assert marker in seen, seen.decode(errors="replace")

    try:
        read_until(b"you>")
        os.write(leader, b"hello\n")
        read_until(b"remember hello'.")
        read_until(b"you>")
        os.write(leader, b"\x04")  # Ctrl-D leaves
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    text = seen.decode()
    assert "\033[2m\033[3m  … Thinking...\033[0m" in text  # notification dimmed
    assert "app>\033[0m I keep notes." in text  # streamed reply, shown as it streams
