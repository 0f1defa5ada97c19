"""The turnlog command as a user runs it: a real process, real servers."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from uuid import uuid4

from turnlog.contracts.events import ChannelRef, UserRef
from turnlog.domain.session import Session
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.sessions.repository import SessionRepository


def turnlog(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnlog", *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=120,
        check=False,
    )


async def test_events_lists_a_sessions_events_in_order(
    store: EventStore, cli_env: dict[str, str]
) -> None:
    t = datetime(2026, 2, 2, 9, 30, tzinfo=UTC)
    session = Session.start(uuid4(), app="notes", user=UserRef(id="u1"), channel=ChannelRef(), at=t)
    session.receive_message(message_id="m1", text="remember buy coffee", at=t)
    session.reply("Noted: buy coffee", at=t)
    session.set_data("notes", ["buy coffee"], at=t)
    session.complete_turn(outcome="ok", duration_ms=2, at=t)
    await SessionRepository(store).save(session, Metadata(correlation_id="m1", actor="user:u1"))

    text = turnlog(cli_env, "events", str(session.id))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["1", "session.started"],
        ["2", "session.message_received"],
        ["3", "session.reply_sent"],
        ["4", "session.data_set"],
        ["5", "session.turn_completed"],
    ]
    assert "2026-02-02T09:30:00.000000+00:00" in lines[0]
    assert '"text":"remember buy coffee"' in lines[1]

    as_json = turnlog(cli_env, "events", str(session.id), "--json")
    assert as_json.returncode == 0, as_json.stderr
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [r["version"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[3]["payload"] == {"key": "notes", "value": ["buy coffee"]}
    assert rows[1]["correlation_id"] == "m1" and rows[1]["actor"] == "user:u1"
    assert rows[0]["recorded_at"].startswith("2026-02-02T09:30:00")


async def test_events_for_an_unknown_or_malformed_session_fail_clearly(
    store: EventStore, cli_env: dict[str, str]
) -> None:
    missing = turnlog(cli_env, "events", str(uuid4()))
    assert missing.returncode == 1 and "no events for session" in missing.stderr
    malformed = turnlog(cli_env, "events", "not-a-uuid")
    assert malformed.returncode == 2 and "not a session id" in malformed.stderr
    assert "Traceback" not in missing.stderr + malformed.stderr


def test_an_unreachable_database_is_a_clear_error(cli_env: dict[str, str]) -> None:
    env = dict(cli_env, TURNLOG_DATABASE_URL="postgresql://postgres@127.0.0.1:1/nothing")
    result = turnlog(env, "events", str(uuid4()))
    assert result.returncode == 1
    assert "cannot connect to PostgreSQL" in result.stderr
    assert "Traceback" not in result.stderr


async def test_projections_rebuild_then_status(store: EventStore, cli_env: dict[str, str]) -> None:
    t = datetime(2026, 2, 2, 9, 30, tzinfo=UTC)
    repo = SessionRepository(store)
    for i in range(3):
        session = Session.start(
            uuid4(), app="notes", user=UserRef(id=f"u{i}"), channel=ChannelRef(), at=t
        )
        session.receive_message(message_id=f"m{i}", text="hello", at=t)
        session.reply("hi", at=t)
        session.complete_turn(outcome="ok", duration_ms=2, at=t)
        await repo.save(session)
    last = await store.last_position()

    rebuilt = turnlog(cli_env, "projections", "rebuild", "--all")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"up to position {last:,}" in rebuilt.stdout
    assert await store.pool.fetchval("SELECT count(*) FROM turnlog_sessions") == 3
    assert await store.pool.fetchval("SELECT count(*) FROM turnlog_history") == 6

    status = turnlog(cli_env, "projections", "status", "--json")
    assert status.returncode == 0, status.stderr
    rows = {r["name"]: r for r in json.loads(status.stdout)}
    assert set(rows) == {
        "sessions", "history", "data", "blocks", "collections", "timeline", "tasks"
    }  # fmt: skip
    assert all(r["position"] == last and r["lag_events"] == 0 for r in rows.values())

    checked = turnlog(cli_env, "audit", "check-projections")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(" ok") == 7
    await store.pool.execute("DELETE FROM turnlog_sessions WHERE user_id = 'u1'")
    differs = turnlog(cli_env, "audit", "check-projections", "--json")
    assert differs.returncode == 1
    failed = [r for r in json.loads(differs.stdout) if not r["ok"]]
    assert [(r["table"], r["only_live"], r["only_rebuilt"]) for r in failed] == [
        ("turnlog_sessions", 0, 1)
    ]

    unknown = turnlog(cli_env, "projections", "rebuild", "histroy")
    assert unknown.returncode == 1
    assert "unknown projection histroy" in unknown.stderr and "Traceback" not in unknown.stderr


async def test_audit_verify_names_the_first_broken_event(
    store: EventStore, cli_env: dict[str, str]
) -> None:
    t = datetime(2026, 2, 2, 9, 30, tzinfo=UTC)
    repo = SessionRepository(store)
    sessions = []
    for i in range(2):
        session = Session.start(
            uuid4(), app="notes", user=UserRef(id=f"u{i}"), channel=ChannelRef(), at=t
        )
        session.receive_message(message_id=f"m{i}", text="hello", at=t)
        session.reply("hi", at=t)
        session.complete_turn(outcome="ok", duration_ms=2, at=t)
        await repo.save(session)
        sessions.append(str(session.id))

    intact = turnlog(cli_env, "audit", "verify", "--all")
    assert intact.returncode == 0, intact.stderr
    assert (
        "verified 8 events in 2 streams" in intact.stdout
        and "every hash chain holds" in intact.stdout
    )

    async with store.pool.acquire() as conn:
        await conn.execute("ALTER TABLE turnlog_events DISABLE TRIGGER USER")
        await conn.execute(
            "UPDATE turnlog_events SET payload = convert_to('{\"text\":\"bye\"}', 'UTF8')"
            " WHERE stream_id = $1 AND version = 3",
            sessions[1],
        )
        await conn.execute("ALTER TABLE turnlog_events ENABLE TRIGGER USER")
    broken = turnlog(cli_env, "audit", "verify", "--all")
    assert broken.returncode == 1
    assert f"BROKEN {sessions[1]} version 3" in broken.stdout and "altered" in broken.stdout
    one = turnlog(cli_env, "audit", "verify", sessions[0], "--json")
    assert one.returncode == 0 and json.loads(one.stdout)["broken"] == []
    neither = turnlog(cli_env, "audit", "verify")
    assert neither.returncode == 2 and "--all" in neither.stderr
