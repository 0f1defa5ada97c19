"""A log written by turnlog before services/ was rebuilt (tests/fixtures/before_the_house:
the export, its users' keys, the app that wrote it, and its replays as they were): it
imports, verifies, replays and re-runs identically, and exports byte for byte."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from turnlog.services.adapters.postgres.eventstore import EventStore

HERE = Path(__file__).resolve().parents[1] / "fixtures" / "before_the_house"
SESSIONS = ["be40e000-0000-4000-8000-000000000000", "be40e000-0000-4000-8000-000000000001"]


async def turnlog(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "turnlog", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


async def test_the_log_from_before_verifies_replays_reruns_and_exports_the_same(
    store: EventStore, cli_env: dict[str, str]
) -> None:
    await store.pool.execute((HERE / "keys.sql").read_text())
    loaded = await turnlog(cli_env, "import", str(HERE / "log.jsonl"))
    assert loaded.returncode == 0, loaded.stderr
    verified = await turnlog(cli_env, "audit", "verify", "--all", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["broken"] == []
    for n, session in enumerate(SESSIONS):
        replay = await turnlog(cli_env, "replay", session, "--json")
        assert replay.returncode == 0, replay.stderr
        assert json.loads(replay.stdout) == json.loads((HERE / f"replay-{n}.json").read_text())
        rerun = await turnlog(cli_env, "replay", session, "--rerun", str(HERE / "app.py"))
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert "5 of 5 turns re-run: identical" in rerun.stdout
    exported = await turnlog(cli_env, "export")
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == (HERE / "log.jsonl").read_text()
