"""turnlog's side of bench/durable.py: the turn as a handler on the in-process runtime.

A turn receives the message (recorded before the handler runs), replies, and counts the
session's turns in ``session.data["turns"]``. The cut-off turn replies and then waits
forever; the parent kills its process once the reply is on record. Recovery is what
``turnlog run`` does when JetStream redelivers the message that was never acknowledged:
a fresh process loads the session and hands the runtime the same message again.

    python -m bench.durable_turnlog {rate,cut,recover} --db URL ...
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg

import turnlog
from bench.durable_worker import Side, measured, pool_size, serve, wait_for
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.app.sessions.host import SessionHost
from turnlog.services.app.sessions.turn import Inbound, TurnResult
from turnlog.services.bootstrap.wiring import Wiring

app = turnlog.App("durable")
USER = turnlog.UserInfo(id="bench")
CUT_TEXT = "the turn that is cut off"
hold_after_reply = False  # set in the process whose turn is cut off

# Everything recorded on the session from the cut-off message on, in order.
FROM_THE_CUT = """
SELECT type, correlation_id FROM turnlog_events
WHERE stream_id = $1 AND version >= (
    SELECT version FROM turnlog_events
    WHERE stream_id = $1 AND correlation_id = $2 AND type = 'session.message_received'
)
ORDER BY version
"""
TURN_ENDS = ("session.turn_completed", "session.turn_interrupted")


@app.message()
async def handle(session: turnlog.Session, msg: turnlog.Message) -> None:
    await session.reply(f"echo {msg.text}")
    session.data["turns"] = session.data.get("turns", 0) + 1
    if hold_after_reply:
        await asyncio.Event().wait()


def inbound(session_id: str, message_id: str, text: str) -> Inbound:
    return Inbound(message_id=message_id, text=text, user=USER, session_id=uuid.UUID(session_id))


async def open_host(db: str, pool: int) -> tuple[EventStore, SessionHost]:
    store = await EventStore.connect(db, min_size=pool, max_size=pool)
    return store, Wiring.postgres(store).host(app)


async def rate(db: str, sessions: int, seconds: float) -> dict[str, Any]:
    store, host = await open_host(db, pool_size(sessions))

    async def turn(session_id: str, n: int) -> TurnResult:
        return await host.handle(inbound(session_id, uuid.uuid4().hex, f"m{n}"))

    try:
        return await measured(turn, sessions, seconds)
    finally:
        await host.stop()
        await store.close()


async def cut(db: str, session_id: str, message_id: str) -> None:
    global hold_after_reply
    _, host = await open_host(db, 2)
    await host.handle(inbound(session_id, uuid.uuid4().hex, "the turn before"))
    hold_after_reply = True
    await host.handle(inbound(session_id, message_id, CUT_TEXT))


async def recover(db: str, session_id: str, message_id: str) -> dict[str, Any]:
    """From connecting to the cut-off turn ended on record: the time, and what the log
    shows from its message on."""
    observer = await asyncpg.connect(db)
    started = time.perf_counter()
    store, host = await open_host(db, 2)
    ready = time.perf_counter()

    async def ended() -> bool:
        rows = await observer.fetch(FROM_THE_CUT, session_id, message_id)
        return any(r["type"] in TURN_ENDS and r["correlation_id"] == message_id for r in rows)

    try:
        result = await host.handle(inbound(session_id, message_id, CUT_TEXT))
        await wait_for(ended, 30, "the end of the cut-off turn")
        done = time.perf_counter()
        events = await observer.fetch(FROM_THE_CUT, session_id, message_id)
        session = await host.repo.load(uuid.UUID(session_id))
    finally:
        await host.stop()
        await store.close()
        await observer.close()
    types = [r["type"] for r in events]
    ends = [r["type"] for r in events if r["correlation_id"] == message_id]
    return {
        "ready_ms": (ready - started) * 1000,
        "ended_ms": (done - started) * 1000,
        "redelivery": result.outcome,
        "events": types,
        "resumed": "session.turn_resumed" in types and "session.turn_completed" in ends,
        "replies": ends.count("session.reply_sent"),
        "counter": session.data.get("turns"),
    }


SIDE = Side(rate=rate, cut=cut, recover=recover)

if __name__ == "__main__":
    serve(SIDE, "python -m bench.durable_turnlog")
