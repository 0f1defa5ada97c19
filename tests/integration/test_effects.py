"""Recorded inputs: what a handler gets from outside (a model, the clock, randomness) is
on record, so a turn can be replayed without calling out again."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import turnlog
from tests.helpers import inbound
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.app.sessions.outbound import NoDelivery
from turnlog.services.bootstrap.wiring import Wiring


async def test_effects_clock_and_ids_are_recorded_in_call_order(store: EventStore) -> None:
    app = turnlog.App("effects")
    seen: dict[str, Any] = {}

    async def model(prompt: str, *, temperature: float) -> dict[str, Any]:
        return {"text": f"echo {prompt}", "temperature": temperature}

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        seen["answer"] = await session.effect("model", model, msg.text, temperature=0.5)
        seen["sync"] = await session.effect("dice", lambda: 4)
        seen["now"] = session.now()
        seen["id"] = session.uuid()
        await session.reply(seen["answer"]["text"])

    host = Wiring.postgres(store).host(app, NoDelivery())
    try:
        result = await host.handle(inbound("hi", turnlog.UserInfo(id="u1")))
    finally:
        await host.stop()
    assert result.outcome == "ok"
    effects = [
        json.loads(r.payload)
        for r in await store.keyring.unseal(await store.read_stream(str(result.session_id)))
        if r.type == "session.effect_recorded"
    ]
    assert effects == [
        {"name": "model", "result": {"text": "echo hi", "temperature": 0.5}},
        {"name": "dice", "result": 4},
        {"name": "now", "result": seen["now"].isoformat(timespec="microseconds")},
        {"name": "uuid", "result": seen["id"]},
    ]
    assert isinstance(seen["now"], datetime) and seen["now"].tzinfo is UTC
    assert len(seen["id"]) == 32


async def test_a_result_that_is_not_plain_json_fails_the_turn_clearly(store: EventStore) -> None:
    app = turnlog.App("effects")

    @app.message()
    async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
        await session.effect("clock", lambda: datetime.now(UTC))

    host = Wiring.postgres(store).host(app, NoDelivery())
    try:
        result = await host.handle(inbound("hi", turnlog.UserInfo(id="u1")))
    finally:
        await host.stop()
    assert result.outcome == "failed"
    assert result.error_type == "NotJSONEncodable" and "effect 'clock' result" in (
        result.error_message or ""
    )
