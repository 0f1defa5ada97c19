"""The soak of hostile and valid input through `turnlog run` (bench/soak.py), short:
every message ends as a turn or a dead letter, nothing else gives."""

from __future__ import annotations

from pathlib import Path

from bench.soak import soak
from turnlog.services.adapters.embedded.endpoints import Endpoints


async def test_hostile_and_valid_messages_are_each_a_turn_or_a_dead_letter(
    database_url: str, servers: Endpoints, prefix: str, tmp_path: Path
) -> None:
    report = await soak(
        database_url, servers.nats_url, tmp_path, messages=1_000, sessions=20, prefix=prefix,
        wait=240,
    )  # fmt: skip
    print("\n" + "\n".join(report.lines()))
    assert report.process_up
    assert (report.accounted, report.doubled) == (report.sent, 0)
    assert report.turns > 0
    expected = {"invalid_text", "invalid_user", "undecodable", "schema_violation", "too_large"}
    expected |= {"too_deep"}
    assert expected <= set(report.dead_letters), report.dead_letters
    assert report.tracebacks == 0
    assert report.lag == 0 and report.projections_equal and report.verified
    inbound_messages, _ = report.streams[f"{prefix.upper()}_IN"]
    assert inbound_messages == 0  # handled input does not outlive its handling
