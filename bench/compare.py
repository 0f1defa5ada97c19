"""turnlog against other ways of storing the same conversation on the same PostgreSQL.

    python -m bench [--seconds 5] [--sessions 1,10,100] [--skip SYSTEM,...] [--quick]

A turn is one user message, one reply and one data key, durable before the next turn of
its session starts. Each system runs the same conversation at each concurrency (sessions
talking back to back), each in a scratch database of its own on one server:

- turnlog, in process (SessionHost) and through NATS (``turnlog run`` in a child process);
- the eventsourcing library's own ``Application`` on its PostgreSQL persistence;
- LangGraph with its PostgreSQL checkpointer (``langgraph-checkpoint-postgres``);
- raw asyncpg inserts of turnlog's rows in turnlog's transaction shape: once with a
  transaction per write, once group-committed across sessions as turnlog does (the
  ceiling, which the raw-insert target is measured against).

Then session load time at 100 / 1,000 / 10,000 events and the peak memory of a runtime
holding 10,000 live sessions (in a child process). Prints markdown tables and writes
``bench/results/compare.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.metadata
import importlib.util
import inspect
import json
import operator
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypedDict
from urllib.parse import unquote, urlsplit

import asyncpg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from bench import bus as bus_bench
from bench import load as load_bench
from bench import turns as turns_bench
from bench.append import RAW_INSERT
from bench.common import machine, scratch_database, table
from bench.groupcommit import GroupCommit
from turnlog.contracts.events import ChannelRef, UserRef
from turnlog.domain.session import Session as SessionAggregate
from turnlog.services.adapters.embedded.endpoints import endpoints
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.app import mapping
from turnlog.services.app.log import hashing
from turnlog.services.app.log.records import NewEvent
from turnlog.services.app.sessions.repository import SessionRepository
from turnlog.services.bootstrap import aio
from turnlog.services.bootstrap.wiring import Wiring
from turnlog.services.settings import Settings

RESULTS = Path(__file__).with_name("results")
SYSTEMS = {
    "turnlog": "turnlog, in process",
    "bus": "turnlog through NATS",
    "eventsourcing": "eventsourcing Application",
    "langgraph": "LangGraph checkpointer",
    "raw": "raw asyncpg, a transaction per write",
    "raw_group": "raw asyncpg, group-committed (ceiling)",
}
RAW = ("raw", "raw_group")
CEILING = "ceiling"  # in TARGETS: whichever raw row is faster at that concurrency
SKIPPABLE = (*SYSTEMS, "load", "rss")
MAX_POOL = 40  # connections per system: the server allows 100
TARGETS = (  # (system, minimum of turnlog's turns/s divided by that system's)
    ("eventsourcing", 2.0),
    ("langgraph", 3.0),
    (CEILING, 0.3),
)
LIBRARIES = (
    "turnlog",
    "eventsourcing",
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-postgres",
    "psycopg",
    "psycopg-binary",
    "psycopg-pool",
    "asyncpg",
    "nats-py",
    "msgspec",
    "uvloop",
    "matplotlib",
)
_STORE = inspect.signature(EventStore).parameters  # the group commit's settings
BATCH_LIMIT: int = _STORE["batch_limit"].default
MAX_INFLIGHT: int = _STORE["max_inflight"].default
NOTES = {
    "turnlog": (
        "SessionHost + SessionRepository + EventStore, sessions held in memory. Per turn two "
        "commits: session.message_received (1 row) before the handler runs, then "
        "session.reply_sent + session.data_set + session.turn_completed (3 rows); rows carry "
        "a SHA-256 hash chain and are checked against the stream's version; concurrent "
        "sessions share transactions (group commit). A session's first turn also commits "
        "session.started."
    ),
    "bus": (
        "the same runtime under `turnlog run` in its own process, producers in this one: "
        "the message is published on JetStream, the reply comes back on the live subject "
        "and the relay publishes every event on turnlog.events; latency is from the publish "
        "to the turn's turn_completed arriving through the relay."
    ),
    "eventsourcing": (
        "one Aggregate per session kept in memory between turns (as turnlog's host does); "
        "per turn three events (MessageReceived, ReplySent, DataSet) and one app.save(): one "
        "transaction that takes the table's EXCLUSIVE lock (the library serialises inserts "
        "so its notification ids commit in order) and inserts 3 JSON-encoded rows; one "
        "thread per session (it is a synchronous library), psycopg pool sized for the "
        "concurrency."
    ),
    "langgraph": (
        "StateGraph with one node that appends the reply to `messages` (operator.add "
        "reducer, plain dicts) and sets a key in `data`; ainvoke once per turn with "
        "thread_id = session and durability='exit': one checkpoint per turn. Each invoke "
        "reads the thread's latest checkpoint and its blobs, then writes one checkpoints "
        "row plus one checkpoint_blobs row per changed channel (the whole `messages` list, "
        "re-serialised, and `data`), in one pipeline; AsyncConnectionPool sized for the "
        "concurrency."
    ),
    "raw": (
        "turnlog's rows (same columns, same payload bytes, precomputed 32-byte hashes) "
        "inserted with asyncpg into a table LIKE turnlog_events (same constraints and "
        "indexes) in turnlog's shape: one INSERT … SELECT FROM unnest of 1 row, then one of "
        "3 rows, each its own transaction; no version check, no hashing, no batching across "
        "sessions; same pool as turnlog. Two commits per turn whatever the concurrency: "
        "turnlog's shape without its group commit."
    ),
    "raw_group": (
        "the same rows and the same two writes per turn (1 row, then 3), no version check "
        "and no hashing, group-committed across sessions in the shape of turnlog's "
        "EventStore.append (bench/groupcommit.py): a write made while nothing is in flight "
        f"is its own INSERT; writes arriving meanwhile queue, and up to {MAX_INFLIGHT} "
        f"flushers each take everything pending (at most {BATCH_LIMIT} writes), insert it "
        "with one multi-row INSERT … SELECT FROM unnest in one transaction and wake each "
        "waiting session; same pool as turnlog. The ceiling for turnlog's writes: the "
        "raw-insert target is measured against the faster raw row, normally this one."
    ),
}


@dataclass
class Row:
    system: str
    sessions: int
    turns: int
    seconds: float
    p50_ms: float
    p99_ms: float
    turns_per_s: float = field(init=False)
    turns_per_session: float = field(init=False)

    def __post_init__(self) -> None:
        self.turns_per_s = self.turns / self.seconds
        self.turns_per_session = self.turns / self.sessions


def row(system: str, sessions: int, turns: int, seconds: float, latencies: list[float]) -> Row:
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    result = Row(system, sessions, turns, seconds, q[49], q[98])
    print(
        f"  {SYSTEMS[system]}, {sessions} sessions: {result.turns_per_s:,.0f} turns/s, "
        f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms",
        flush=True,
    )
    return result


def pool_size(concurrency: list[int]) -> int:
    return min(max(concurrency) + 2, MAX_POOL)


# -- turnlog --------------------------------------------------------------------------


async def bench_turnlog(url: str, seconds: float, concurrency: list[int]) -> list[Row]:
    rows = []
    async with scratch_database(url) as db:
        size = pool_size(concurrency)
        store = await EventStore.connect(db, min_size=size, max_size=size)
        host = Wiring.postgres(store).host(turns_bench.app)
        await turns_bench.run(host, 4, 0.5)  # warm up
        for sessions in concurrency:
            started = time.perf_counter()
            turns, latencies = await turns_bench.run(host, sessions, seconds)
            rows.append(row("turnlog", sessions, turns, time.perf_counter() - started, latencies))
        await host.stop()
        await store.close()
    return rows


async def bench_bus(url: str, nats_url: str, seconds: float, concurrency: list[int]) -> list[Row]:
    rows = []
    async with scratch_database(url) as db, bus_bench.serving(db, nats_url) as prefix:
        await bus_bench.measure(nats_url, prefix, 4, 0.5)  # warm up (and wait for the server)
        for sessions in concurrency:
            measured = await bus_bench.measure(nats_url, prefix, sessions, seconds)
            rows.append(
                row("bus", sessions, measured.turns, measured.seconds, measured.completions)
            )
    return rows


# -- eventsourcing --------------------------------------------------------------------


class Conversation(Aggregate):
    """A chat session as a typical eventsourcing user would write it."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.messages: list[dict[str, str]] = []
        self.data: dict[str, Any] = {}

    @event("MessageReceived")
    def receive_message(self, message_id: str, text: str) -> None:
        self.messages.append({"id": message_id, "role": "user", "text": text})

    @event("ReplySent")
    def reply(self, text: str) -> None:
        self.messages.append({"role": "assistant", "text": text})

    @event("DataSet")
    def set_data(self, key: str, value: Any) -> None:
        self.data[key] = value


class Chat(Application[uuid.UUID]):
    pass


def es_env(db: str, pool: int) -> dict[str, str]:
    parts = urlsplit(db)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": parts.path.lstrip("/"),
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_POOL_SIZE": str(pool),
        "POSTGRES_MAX_OVERFLOW": "0",
        "POSTGRES_CONNECT_TIMEOUT": "60",
    }


def es_turn(app: Chat, conversation: Conversation, n: int) -> None:
    text = f"m{n}"
    conversation.receive_message(message_id=uuid.uuid4().hex, text=text)
    conversation.reply(text=f"echo {text}")
    conversation.set_data(key="last", value=text)
    app.save(conversation)


def es_run(app: Chat, sessions: int, seconds: float) -> tuple[int, float, list[float]]:
    deadline = time.perf_counter() + seconds

    def converse(_: int) -> list[float]:
        conversation = Conversation(user="bench")
        latencies: list[float] = []
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            es_turn(app, conversation, len(latencies))
            latencies.append((time.perf_counter() - started) * 1000)
        return latencies

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=sessions) as threads:
        results = list(threads.map(converse, range(sessions)))
    elapsed = time.perf_counter() - started
    latencies = [x for r in results for x in r]
    return len(latencies), elapsed, latencies


def es_bench(db: str, seconds: float, concurrency: list[int]) -> list[Row]:
    rows = []
    for sessions in concurrency:
        app = Chat(env=es_env(db, min(sessions, MAX_POOL)))
        try:
            es_run(app, min(sessions, 4), 0.5)  # warm up
            turns, elapsed, latencies = es_run(app, sessions, seconds)
            rows.append(row("eventsourcing", sessions, turns, elapsed, latencies))
        finally:
            app.close()
    return rows


async def bench_eventsourcing(url: str, seconds: float, concurrency: list[int]) -> list[Row]:
    async with scratch_database(url) as db:
        return await asyncio.to_thread(es_bench, db, seconds, concurrency)


# -- LangGraph ------------------------------------------------------------------------


class ChatState(TypedDict, total=False):
    messages: Annotated[list[dict[str, str]], operator.add]
    data: dict[str, Any]


def respond(state: ChatState) -> ChatState:
    text = state["messages"][-1]["text"]
    return {
        "messages": [{"role": "assistant", "text": f"echo {text}"}],
        "data": {**state.get("data", {}), "last": text},
    }


class LangGraphChat:
    """The graph compiled with an AsyncPostgresSaver on a psycopg pool."""

    def __init__(self, db: str, pool: int) -> None:
        self.db, self.size = db, pool

    async def __aenter__(self) -> LangGraphChat:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from langgraph.graph import END, START, StateGraph
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        self.pool = AsyncConnectionPool(
            self.db,
            min_size=self.size,
            max_size=self.size,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
            open=False,
        )
        await self.pool.open(wait=True)
        self.saver = AsyncPostgresSaver(self.pool)  # type: ignore[arg-type]
        await self.saver.setup()
        graph = StateGraph(ChatState)
        graph.add_node("respond", respond)
        graph.add_edge(START, "respond")
        graph.add_edge("respond", END)
        self.graph = graph.compile(checkpointer=self.saver)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.close()

    @staticmethod
    def config(thread_id: str) -> Any:
        return {"configurable": {"thread_id": thread_id}}

    async def turn(self, thread_id: str, n: int) -> None:
        message = {"id": uuid.uuid4().hex, "role": "user", "text": f"m{n}"}
        await self.graph.ainvoke({"messages": [message]}, self.config(thread_id), durability="exit")

    async def run(self, sessions: int, seconds: float) -> tuple[int, float, list[float]]:
        deadline = time.perf_counter() + seconds
        latencies: list[float] = []

        async def converse() -> None:
            thread_id, n = uuid.uuid4().hex, 0
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                await self.turn(thread_id, n)
                latencies.append((time.perf_counter() - started) * 1000)
                n += 1

        started = time.perf_counter()
        await asyncio.gather(*(converse() for _ in range(sessions)))
        return len(latencies), time.perf_counter() - started, latencies

    async def written_per_turn(self) -> dict[str, float]:
        """Rows per turn in each checkpointer table, from a short conversation of its own."""
        tables = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
        thread_id, turns = uuid.uuid4().hex, 10
        for n in range(turns):
            await self.turn(thread_id, n)
        counts = {}
        async with self.pool.connection() as conn:
            for name in tables:
                cursor = await conn.execute(
                    f"SELECT count(*) AS n FROM {name} WHERE thread_id = %s",  # type: ignore[arg-type]
                    (thread_id,),
                )
                found = await cursor.fetchone()
                counts[name] = (found["n"] if found else 0) / turns  # type: ignore[call-overload]
        return counts


async def bench_langgraph(
    url: str, seconds: float, concurrency: list[int]
) -> tuple[list[Row], dict[str, float]]:
    rows = []
    async with scratch_database(url) as db:
        for sessions in concurrency:
            async with LangGraphChat(db, min(sessions, MAX_POOL)) as chat:
                await chat.run(min(sessions, 4), 0.5)  # warm up
                turns, elapsed, latencies = await chat.run(sessions, seconds)
                rows.append(row("langgraph", sessions, turns, elapsed, latencies))
        async with LangGraphChat(db, 2) as chat:
            written = await chat.written_per_turn()
    return rows, written


# -- the ceiling: raw asyncpg ---------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """turnlog's rows for a session's start and one turn, encoded once."""

    start: list[NewEvent]
    message: list[NewEvent]
    rest: list[NewEvent]
    digest: bytes


def template() -> Template:
    at = dt.datetime.now(dt.UTC)
    codec = mapping.session_codec()
    mid = uuid.uuid4().hex
    user = mapping.Metadata(correlation_id=mid, causation_id=mid, actor="user:bench")
    app = mapping.Metadata(correlation_id=mid, causation_id=mid, actor="app:bench")
    session = SessionAggregate.start(
        uuid.uuid4(), app="bench", user=UserRef(id="bench"), channel=ChannelRef(), at=at
    )
    start = [mapping.to_new_event(e, app, codec) for e in session.collect_events()]
    session.receive_message(message_id=mid, text="m0", at=at)
    message = [mapping.to_new_event(e, user, codec) for e in session.collect_events()]
    session.reply("echo m0", at=at)
    session.set_data("last", "m0", at=at)
    session.complete_turn(outcome="ok", duration_ms=0.05, at=at)
    rest = [mapping.to_new_event(e, app, codec) for e in session.collect_events()]
    return Template(start, message, rest, hashing.chain(hashing.GENESIS, b"turn"))


def raw_columns(events: list[NewEvent], correlation: str, digest: bytes) -> list[list[Any]]:
    now = dt.datetime.now(dt.UTC)
    return [
        [e.type for e in events],
        [e.schema_version for e in events],
        [e.payload for e in events],
        [now] * len(events),
        [correlation] * len(events),
        [correlation] * len(events),
        [e.actor for e in events],
        [digest] * len(events),
        [digest] * len(events),
    ]


Insert = Callable[[str, int, list[list[Any]]], Awaitable[None]]


async def raw_run(
    insert: Insert, rows: Template, sessions: int, seconds: float
) -> tuple[int, float, list[float]]:
    """Sessions talking back to back, each turn's two writes made with ``insert``."""
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []

    async def converse() -> None:
        stream, version = str(uuid.uuid4()), 0
        mid = uuid.uuid4().hex
        await insert(stream, 0, raw_columns(rows.start, mid, rows.digest))
        version += len(rows.start)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            mid = uuid.uuid4().hex
            await insert(stream, version, raw_columns(rows.message, mid, rows.digest))
            await insert(stream, version + 1, raw_columns(rows.rest, mid, rows.digest))
            version += 1 + len(rows.rest)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(converse() for _ in range(sessions)))
    return len(latencies), time.perf_counter() - started, latencies


async def bench_raw(url: str, seconds: float, concurrency: list[int], system: str) -> list[Row]:
    """One raw row per concurrency: ``raw`` (a transaction per write) or ``raw_group``."""
    rows = []
    shape = template()
    async with scratch_database(url) as db:
        size = pool_size(concurrency)
        store = await EventStore.connect(db, min_size=size, max_size=size)  # same pool setup
        await store.pool.execute(
            "CREATE TABLE raw_events (LIKE turnlog_events INCLUDING DEFAULTS"
            " INCLUDING CONSTRAINTS INCLUDING INDEXES)"
        )
        group = GroupCommit(
            store.pool, batch_limit=store.batch_limit, max_inflight=store.max_inflight
        )

        async def each_its_own(stream: str, after: int, columns: list[list[Any]]) -> None:
            await store.pool.execute(RAW_INSERT, stream, after, *columns)

        insert = group.insert if system == "raw_group" else each_its_own
        await raw_run(insert, shape, 4, 0.5)  # warm up
        for sessions in concurrency:
            turns, elapsed, latencies = await raw_run(insert, shape, sessions, seconds)
            rows.append(row(system, sessions, turns, elapsed, latencies))
        await group.close()
        await store.close()
    return rows


# -- load time ------------------------------------------------------------------------


async def median_ms(load: Callable[[], Awaitable[object]], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await load()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


async def load_turnlog(url: str, sizes: list[int], repeat: int) -> list[dict[str, Any]]:
    out = []
    async with scratch_database(url) as db:
        store = await EventStore.connect(db)
        repo = SessionRepository(store, snapshot_every=200)
        for events in sizes:
            session = await load_bench.build(repo, events)
            snap = await load_bench.timed(repo, session, True, repeat)
            full = await load_bench.timed(repo, session, False, repeat)
            out.append({"events": events, "snapshot_ms": snap, "replay_ms": full})
            print(
                f"  turnlog load, {events:,} events: snapshot + tail {snap:.1f} ms, "
                f"full replay {full:.1f} ms",
                flush=True,
            )
        await store.close()
    return out


def turns_in(events: int) -> int:
    """Turns in a turnlog session of ``events`` events (started, then 4 events a turn)."""
    return (events - 1) // 4


def es_load(db: str, sizes: list[int], repeat: int) -> list[dict[str, Any]]:
    out = []
    app = Chat(env=es_env(db, 2))
    try:
        for events in sizes:
            conversation = Conversation(user="bench")
            for n in range(turns_in(events)):
                text = f"message {n}"
                conversation.receive_message(message_id=f"m{n}", text=text)
                conversation.reply(text=f"reply {n}")
                conversation.set_data(key="counter", value=n)
            app.save(conversation)
            samples = []
            for _ in range(repeat):
                started = time.perf_counter()
                loaded = app.repository.get(conversation.id)
                samples.append(time.perf_counter() - started)
                assert loaded.version == conversation.version
            ms = statistics.median(samples) * 1000
            out.append({"events": conversation.version, "ms": ms})
            print(
                f"  eventsourcing load, {turns_in(events):,} turns "
                f"({conversation.version:,} events): {ms:.1f} ms",
                flush=True,
            )
    finally:
        app.close()
    return out


async def load_langgraph(url: str, sizes: list[int], repeat: int) -> list[dict[str, Any]]:
    out = []
    async with scratch_database(url) as db, LangGraphChat(db, 2) as chat:
        for events in sizes:
            turns = turns_in(events)
            history = []
            for n in range(turns):
                history.append({"id": f"m{n}", "role": "user", "text": f"message {n}"})
                history.append({"role": "assistant", "text": f"reply {n}"})
            config = chat.config(uuid.uuid4().hex)
            await chat.graph.ainvoke({"messages": history[:-1]}, config, durability="exit")

            async def get(config: Any = config, size: int = len(history)) -> None:
                found = await chat.saver.aget_tuple(config)
                assert found is not None
                assert len(found.checkpoint["channel_values"]["messages"]) == size

            ms = await median_ms(get, repeat)
            out.append({"messages": len(history), "ms": ms})
            print(
                f"  LangGraph load, {turns:,} turns ({len(history):,} messages): {ms:.1f} ms",
                flush=True,
            )
    return out


async def bench_load(
    url: str, sizes: list[int], repeat: int, skip: set[str]
) -> list[dict[str, Any]]:
    results: dict[str, list[dict[str, Any]]] = {}
    results["turnlog"] = await load_turnlog(url, sizes, repeat)
    if "eventsourcing" not in skip:
        async with scratch_database(url) as db:
            results["eventsourcing"] = await asyncio.to_thread(es_load, db, sizes, repeat)
    if "langgraph" not in skip:
        results["langgraph"] = await load_langgraph(url, sizes, repeat)
    rows = []
    for i, events in enumerate(sizes):
        entry: dict[str, Any] = {"turnlog_events": events, "turns": turns_in(events)}
        entry["turnlog_snapshot_ms"] = results["turnlog"][i]["snapshot_ms"]
        entry["turnlog_replay_ms"] = results["turnlog"][i]["replay_ms"]
        if "eventsourcing" in results:
            entry["eventsourcing_events"] = results["eventsourcing"][i]["events"]
            entry["eventsourcing_ms"] = results["eventsourcing"][i]["ms"]
        if "langgraph" in results:
            entry["langgraph_messages"] = results["langgraph"][i]["messages"]
            entry["langgraph_ms"] = results["langgraph"][i]["ms"]
        rows.append(entry)
    return rows


# -- memory ---------------------------------------------------------------------------


def bench_rss(sessions: int) -> dict[str, float]:
    """``bench.rss`` in a child process, so that nothing of this one is counted."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.rss", "--sessions", str(sessions), "--json"],
        check=True,
        capture_output=True,
        text=True,
        env=dict(os.environ, TURNLOG_LOG_LEVEL="warning"),
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["peak_bytes"] = max(figures["peak_bytes"], figures["after_bytes"])
    print(
        f"  {sessions:,} live sessions: peak RSS {figures['peak_bytes'] / 2**20:.1f} MiB, "
        f"{figures['per_session_bytes'] / 1024:.1f} KiB per session above the baseline",
        flush=True,
    )
    return figures


# -- report ---------------------------------------------------------------------------


def versions() -> dict[str, str]:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    found["python"] = sys.version.split()[0]
    return found


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "—"


def throughput_table(rows: list[Row]) -> str:
    by = {(r.system, r.sessions): r for r in rows}
    lines = []
    for r in rows:
        ours = by.get(("turnlog", r.sessions))
        bus = by.get(("bus", r.sessions))
        lines.append(
            [
                SYSTEMS[r.system],
                str(r.sessions),
                f"{r.turns_per_s:,.0f}",
                f"{r.p50_ms:.1f}",
                f"{r.p99_ms:.1f}",
                ratio(ours.turns_per_s, r.turns_per_s) if ours else "—",
                ratio(bus.turns_per_s, r.turns_per_s) if bus else "—",
            ]
        )
    return table(
        [
            "system",
            "sessions",
            "turns/s",
            "p50 ms",
            "p99 ms",
            f"{SYSTEMS['turnlog']} ÷ this row",
            f"{SYSTEMS['bus']} ÷ this row",
        ],
        lines,
    )


def load_table(rows: list[dict[str, Any]]) -> str:
    headers = ["turns", "turnlog events", "turnlog snapshot + tail ms", "turnlog full replay ms"]
    es = rows and "eventsourcing_ms" in rows[0]
    lg = rows and "langgraph_ms" in rows[0]
    if es:
        headers += ["eventsourcing events", "eventsourcing get ms"]
    if lg:
        headers += ["LangGraph messages", "LangGraph aget_tuple ms"]
    lines = []
    for r in rows:
        line = [
            f"{r['turns']:,}",
            f"{r['turnlog_events']:,}",
            f"{r['turnlog_snapshot_ms']:.1f}",
            f"{r['turnlog_replay_ms']:.1f}",
        ]
        if es:
            line += [f"{r['eventsourcing_events']:,}", f"{r['eventsourcing_ms']:.1f}"]
        if lg:
            line += [f"{r['langgraph_messages']:,}", f"{r['langgraph_ms']:.1f}"]
        lines.append(line)
    return table(headers, lines)


def targets(rows: list[Row], at: int) -> list[dict[str, Any]]:
    """Each of TARGETS at ``at`` sessions; CEILING is the faster raw row there."""
    by = {(r.system, r.sessions): r for r in rows}
    ours = by.get(("turnlog", at))
    out = []
    for against, minimum in TARGETS:
        if against == CEILING:
            raws = [by[s, at] for s in RAW if (s, at) in by]
            theirs = max(raws, key=lambda r: r.turns_per_s) if raws else None
            system = theirs.system if theirs else "raw_group"
        else:
            system, theirs = against, by.get((against, at))
        achieved = ours.turns_per_s / theirs.turns_per_s if ours and theirs else None
        out.append(
            {
                "against": against,
                "system": system,
                "sessions": at,
                "minimum": minimum,
                "turnlog_turns_per_s": ours.turns_per_s if ours else None,
                "their_turns_per_s": theirs.turns_per_s if theirs else None,
                "achieved": achieved,
                "met": achieved is not None and achieved >= minimum,
            }
        )
    return out


def target_lines(found: list[dict[str, Any]]) -> list[str]:
    lines = []
    for t in found:
        ours, theirs = t["turnlog_turns_per_s"], t["their_turns_per_s"]
        who = SYSTEMS["turnlog"] + (f" ({ours:,.0f} turns/s)" if ours else "")
        them = SYSTEMS[t["system"]] + (f" ({theirs:,.0f} turns/s)" if theirs else "")
        if t["against"] == CEILING:
            them += ", the faster raw row"
        want = (
            f"≥ {t['minimum']:.0%} of {them}"
            if t["minimum"] < 1
            else f"≥ {t['minimum']:.0f}× {them}"
        )
        if t["achieved"] is None:
            got = "not measured"
        else:
            figure = f"{t['achieved']:.0%}" if t["minimum"] < 1 else f"{t['achieved']:.2f}×"
            got = f"{figure}: {'met' if t['met'] else 'MISSED'}"
        lines.append(f"- {who} {want}, at {t['sessions']} sessions: {got}")
    return lines


def plot(rows: list[Row], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for system, label in SYSTEMS.items():
        mine = [r for r in rows if r.system == system]
        if mine:
            ax.plot(
                [r.sessions for r in mine],
                [r.turns_per_s for r in mine],
                marker="o",
                linestyle={"raw": ":", "raw_group": "--"}.get(system, "-"),
                label=label,
            )
    ax.set_xscale("log")
    ticks = sorted({r.sessions for r in rows})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("concurrent sessions")
    ax.set_ylabel("persisted turns/s")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


async def postgres_version(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


# -- main -----------------------------------------------------------------------------


@dataclass
class Options:
    seconds: float
    sessions: list[int]
    skip: set[str]
    load_sizes: list[int]
    repeat: int
    rss_sessions: int
    out: Path | None


async def compare(options: Options) -> dict[str, Any]:
    skip = options.skip
    rows: list[Row] = []
    report: dict[str, Any] = {}
    writes: dict[str, Any] = {}
    seconds, concurrency = options.seconds, options.sessions
    report["load_average"] = os.getloadavg()
    print(
        f"{machine()}; {seconds:g} s per row; load average "
        + " ".join(f"{x:.2f}" for x in report["load_average"]),
        flush=True,
    )
    with endpoints(Settings.from_env(), nats="bus" not in skip) as where:
        url = where.database_url
        report["postgres"] = await postgres_version(url)
        if "turnlog" not in skip:
            rows += await bench_turnlog(url, seconds, concurrency)
        if "bus" not in skip:
            rows += await bench_bus(url, where.nats_url, seconds, concurrency)
        if "eventsourcing" not in skip:
            rows += await bench_eventsourcing(url, seconds, concurrency)
        if "langgraph" not in skip:
            found, writes = await bench_langgraph(url, seconds, concurrency)
            rows += found
        for system in RAW:
            if system not in skip:
                rows += await bench_raw(url, seconds, concurrency, system)
        if "load" not in skip:
            report["load"] = await bench_load(url, options.load_sizes, options.repeat, skip)
        if "rss" not in skip:
            report["rss"] = await asyncio.to_thread(bench_rss, options.rss_sessions)
    report["throughput"] = rows
    report["langgraph_rows_per_turn"] = writes
    return report


def render(report: dict[str, Any], options: Options, when: str) -> str:
    rows: list[Row] = report["throughput"]
    at = 100 if 100 in options.sessions else max(options.sessions)
    report["targets"] = targets(rows, at)
    parts = [
        f"# turnlog against other stores — {when}",
        "",
        f"Machine: {machine()}, load average {report['load_average'][0]:.2f} at the start; "
        f"PostgreSQL {report['postgres']} (embedded or configured, "
        f"one server, a scratch database per system). {options.seconds:g} s per row, "
        "sessions talking back to back; a turn is one user message, one reply and one data "
        "key, durable before the session's next turn. Ratio columns: turnlog's turns/s "
        "(in process, or through NATS) divided by that row's, at the same concurrency. "
        "The raw-insert target is against the faster raw row at its concurrency (the "
        "group-committed one unless it lost).",
        "",
        throughput_table(rows),
        "",
        "Targets:",
        *target_lines(report["targets"]),
    ]
    if report.get("load"):
        parts += [
            "",
            f"Session load time (median of {options.repeat}): the same conversation in each "
            "system (turnlog: started + 4 events a turn, snapshots every 200 events; "
            "eventsourcing: created + 3 events a turn, `app.repository.get`; LangGraph: one "
            "checkpoint holding 2 messages a turn, `saver.aget_tuple`).",
            "",
            load_table(report["load"]),
        ]
    if report.get("rss"):
        rss = report["rss"]
        parts += [
            "",
            f"Memory: a SessionHost holding {rss['sessions']:,} live sessions (one turn "
            f"each, in a child process): peak RSS {rss['peak_bytes'] / 2**20:.1f} MiB, "
            f"{rss['per_session_bytes'] / 1024:.1f} KiB per session above the "
            f"{rss['baseline_bytes'] / 2**20:.1f} MiB baseline.",
        ]
    present = {r.system for r in rows}
    parts += ["", "What each system writes per turn:", ""]
    for s in SYSTEMS:
        if s in present:
            parts.append(f"- {SYSTEMS[s]}: {NOTES[s]}")
        if s == "langgraph" and report.get("langgraph_rows_per_turn"):
            counts = ", ".join(f"{k} {v:g}" for k, v in report["langgraph_rows_per_turn"].items())
            parts.append(f"  Rows per turn measured on a 10-turn thread: {counts}.")
    parts += [
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
    ]
    return "\n".join(parts)


def save(report: dict[str, Any], text: str, options: Options, when: str) -> None:
    assert options.out is not None
    options.out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = report["throughput"]
    data = {
        "date": when,
        "machine": machine(),
        "postgres": report["postgres"],
        "load_average_at_start": report["load_average"],
        "versions": versions(),
        "options": {
            "seconds": options.seconds,
            "sessions": options.sessions,
            "skip": sorted(options.skip),
            "load_sizes": options.load_sizes,
            "repeat": options.repeat,
        },
        "throughput": [asdict(r) for r in rows],
        "targets": report["targets"],
        "load": report.get("load"),
        "rss": report.get("rss"),
        "langgraph_rows_per_turn": report.get("langgraph_rows_per_turn"),
        "notes": {s: NOTES[s] for s in SYSTEMS if any(r.system == s for r in rows)},
    }
    (options.out / "compare.json").write_text(json.dumps(data, indent=2) + "\n")
    (options.out / "compare.md").write_text(text + "\n")
    if rows:
        plot(
            rows,
            options.out / "compare.png",
            f"persisted turns/s against concurrency — {when}\n{machine()}",
        )
    print(f"\nwrote {options.out}/compare.json, compare.md, compare.png", flush=True)


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=None, help="per row (default 5)")
    parser.add_argument("--sessions", default="1,10,100", help="concurrency levels")
    parser.add_argument("--skip", default="", help=f"comma-separated, of: {', '.join(SKIPPABLE)}")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 1 s rows, smaller load and memory runs, nothing written",
    )
    parser.add_argument("--out", type=Path, default=None, help=f"default {RESULTS}")
    args = parser.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(SKIPPABLE)
    if unknown:
        parser.error(f"unknown --skip {', '.join(sorted(unknown))}; choose from {SKIPPABLE}")
    missing = [
        module
        for module, needed_by in (
            ("psycopg", "eventsourcing"),
            ("langgraph.checkpoint.postgres", "langgraph"),
            ("matplotlib", None),
        )
        if (needed_by is None or needed_by not in skip) and not _importable(module)
    ]
    if missing:
        parser.error(
            f"missing {', '.join(missing)}: install the bench extra "
            "(pip install -e '.[bench]', or run ./dev bench)"
        )
    out = args.out if args.out is not None else (None if args.quick else RESULTS)
    return Options(
        seconds=args.seconds if args.seconds is not None else (1.0 if args.quick else 5.0),
        sessions=[int(n) for n in args.sessions.split(",")],
        skip=skip,
        load_sizes=[100, 1_000] if args.quick else [100, 1_000, 10_000],
        repeat=3 if args.quick else 5,
        rss_sessions=1_000 if args.quick else 10_000,
        out=out,
    )


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def main(argv: list[str] | None = None) -> None:
    options = parse(argv)
    report = aio.run(compare(options))
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = render(report, options, when)
    print()
    print(text, flush=True)
    if options.out is not None:
        save(report, text, options, when)
