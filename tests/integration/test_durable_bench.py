"""turnlog against DBOS (bench/durable.py), short: both sides run turns, and each side's
cut-off turn ends on record with its reply recorded once. Needs the bench extra's dbos;
skipped without it."""

from __future__ import annotations

import pytest

from bench import durable
from turnlog.services.adapters.embedded.endpoints import Endpoints

pytest.importorskip("dbos")  # the bench extra's; CI installs the test extra only


def test_both_sides_run_turns_and_end_their_cut_off_turns_on_record(
    servers: Endpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TURNLOG_DATABASE_URL", servers.database_url)
    found = durable.main(
        ["--seconds", "0.2", "--sessions", "1", "--rounds", "1", "--recoveries", "1", "--no-save"]
    )
    assert sorted((r.system, r.sessions) for r in found["throughput"]) == [
        ("dbos", 1),
        ("turnlog", 1),
    ]
    assert all(r.turns > 0 and r.transactions > 0 for r in found["throughput"])
    runs = {r["system"]: r for r in found["recovery"]}
    dbos, turnlog = runs["dbos"], runs["turnlog"]
    assert (dbos["status"], dbos["messages"], dbos["replies"], dbos["counter"]) == (
        "SUCCESS",
        1,
        1,
        2,
    )
    assert turnlog["replies"] == 1
    if turnlog["resumed"]:
        assert "session.turn_completed" in turnlog["events"]
        assert turnlog["counter"] == 2
    else:
        assert "session.turn_interrupted" in turnlog["events"]
        assert turnlog["counter"] == 1
