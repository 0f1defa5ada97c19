"""DBOS's side of bench/durable.py: the same turn as a DBOS workflow on the same server.

``turn(session_id, message_id, text)`` is a workflow of three steps, each an insert in
the side's database and each recorded by DBOS before the next starts: the message, the
reply, the session's turn counter (an upsert). The workflow id is the message id, so a
message runs once. The cut-off turn blocks in its third step, after the second is on
record; the parent kills its process. Recovery is DBOS's own: a fresh process launches
DBOS, which finds the workflow still PENDING for this executor and application version
and runs it again, skipping the steps whose outputs are recorded.

    python -m bench.durable_dbos {rate,cut,recover} --db URL ...
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
from dbos import DBOS, SetWorkflowID

from bench.durable_worker import Side, measured, pool_size, serve, wait_for

SCHEMA = """
CREATE TABLE IF NOT EXISTS durable_messages
    (session_id text NOT NULL, message_id text NOT NULL, text text NOT NULL);
CREATE TABLE IF NOT EXISTS durable_replies
    (session_id text NOT NULL, message_id text NOT NULL, text text NOT NULL);
CREATE TABLE IF NOT EXISTS durable_counters
    (session_id text PRIMARY KEY, turns integer NOT NULL);
"""
CUT_TEXT = "the turn that is cut off"
SYSTEM_POOL = 20  # DBOS's default size of its system database pool
hold_in_data_step = False  # set in the process whose turn is cut off
_pool: asyncpg.Pool | None = None  # the app's own connections, for the steps' inserts

STATUS = "SELECT status, recovery_attempts FROM dbos.workflow_status WHERE workflow_uuid = $1"
STARTED = "SELECT started_at_epoch_ms FROM dbos.workflow_status WHERE workflow_uuid = $1"
SERVER_NOW = "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint"
FAILED = ("ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")


def pool() -> asyncpg.Pool:
    assert _pool is not None, "start() first"
    return _pool


@DBOS.step()
async def record_message(session_id: str, message_id: str, text: str) -> None:
    await pool().execute(
        "INSERT INTO durable_messages VALUES ($1, $2, $3)", session_id, message_id, text
    )


@DBOS.step()
async def record_reply(session_id: str, message_id: str, text: str) -> None:
    await pool().execute(
        "INSERT INTO durable_replies VALUES ($1, $2, $3)", session_id, message_id, text
    )


@DBOS.step()
async def record_data(session_id: str) -> int:
    if hold_in_data_step:
        await asyncio.Event().wait()
    turns: int = await pool().fetchval(
        "INSERT INTO durable_counters VALUES ($1, 1) ON CONFLICT (session_id) "
        "DO UPDATE SET turns = durable_counters.turns + 1 RETURNING turns",
        session_id,
    )
    return turns


@DBOS.workflow()
async def turn(session_id: str, message_id: str, text: str) -> str:
    await record_message(session_id, message_id, text)
    reply = f"echo {text}"
    await record_reply(session_id, message_id, reply)
    await record_data(session_id)
    return reply


async def run_turn(session_id: str, message_id: str, text: str) -> str:
    with SetWorkflowID(message_id):
        return await turn(session_id, message_id, text)


async def start(db: str, connections: int) -> None:
    """The app's pool and tables, then DBOS launched on ``db`` (its system tables in the
    ``dbos`` schema of the same database), which recovers what is pending."""
    global _pool
    _pool = await asyncpg.create_pool(
        db, min_size=connections, max_size=connections, reset=_keep_session
    )
    await _pool.execute(SCHEMA)
    DBOS(
        config={
            "name": "durable",
            "system_database_url": db,
            "sys_db_pool_size": max(SYSTEM_POOL, connections),
            "log_level": "WARNING",
        }
    )
    DBOS.launch()


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Connections go back to the pool without asyncpg's reset query, as turnlog's do:
    the steps leave no session state behind."""


async def stop() -> None:
    DBOS.destroy()
    await pool().close()


async def rate(db: str, sessions: int, seconds: float) -> dict[str, Any]:
    await start(db, pool_size(sessions))

    async def one(session_id: str, n: int) -> str:
        return await run_turn(session_id, uuid.uuid4().hex, f"m{n}")

    try:
        return await measured(one, sessions, seconds)
    finally:
        await stop()


async def cut(db: str, session_id: str, message_id: str) -> None:
    global hold_in_data_step
    await start(db, 2)
    await run_turn(session_id, uuid.uuid4().hex, "the turn before")
    hold_in_data_step = True
    await run_turn(session_id, message_id, CUT_TEXT)


async def recover(db: str, session_id: str, message_id: str) -> dict[str, Any]:
    """From launching DBOS to the cut-off workflow SUCCESS: the time, and whether its
    steps ran once each."""
    observer = await asyncpg.connect(db)
    started = time.perf_counter()
    await start(db, 2)
    ready = time.perf_counter()
    launched_at = await observer.fetchval(SERVER_NOW)  # the server's clock, as DBOS's

    async def succeeded() -> bool:
        status = await observer.fetchval(STATUS, message_id)
        if status in FAILED:
            raise RuntimeError(f"the recovered workflow ended {status}")
        return bool(status == "SUCCESS")

    try:
        await wait_for(succeeded, 60, "the recovered workflow's SUCCESS")
        done = time.perf_counter()
        return {
            "ready_ms": (ready - started) * 1000,
            "ended_ms": (done - started) * 1000,
            "dequeued_ms": await observer.fetchval(STARTED, message_id) - launched_at,
            **await _what_is_recorded(observer, session_id, message_id),
        }
    finally:
        await stop()
        await observer.close()


async def _what_is_recorded(
    conn: asyncpg.Connection, session_id: str, message_id: str
) -> dict[str, Any]:
    row = await conn.fetchrow(STATUS, message_id)
    return {
        "status": row["status"],
        "recovery_attempts": row["recovery_attempts"],
        "steps": await conn.fetchval(
            "SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = $1", message_id
        ),
        "messages": await conn.fetchval(
            "SELECT count(*) FROM durable_messages WHERE message_id = $1", message_id
        ),
        "replies": await conn.fetchval(
            "SELECT count(*) FROM durable_replies WHERE message_id = $1", message_id
        ),
        "counter": await conn.fetchval(
            "SELECT turns FROM durable_counters WHERE session_id = $1", session_id
        ),
    }


SIDE = Side(rate=rate, cut=cut, recover=recover)

if __name__ == "__main__":
    serve(SIDE, "python -m bench.durable_dbos")
