"""Several runtime processes of one app sharing its sessions by partition: they split the
16 partitions, a joining or leaving runtime moves them within seconds, and a runtime
killed under load hands its sessions to the others without any session's turns running
in two processes at once, or any turn lost, doubled or out of order."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest

import turnlog
from turnlog.contracts import bus
from turnlog.services.adapters.embedded.endpoints import Endpoints
from turnlog.services.adapters.nats.client_session import ClientSession
from turnlog.services.adapters.nats.ownership import spaces
from turnlog.services.adapters.nats.partitioning import partition_of, transforms
from turnlog.services.adapters.postgres.eventstore import EventStore

MARKED = Path(__file__).resolve().parents[1] / "apps" / "marked.py"
ACK_WAIT = 2.0
SETTLE = ACK_WAIT + 8.0  # partitions move within ack_wait and a few seconds
_OWNERS = (
    "SELECT pid, count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2"
    " AND granted AND classid = ($1::int8 & 4294967295)::oid"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " GROUP BY pid"
)


@pytest.fixture
async def partitioning(servers: Endpoints) -> None:
    nc = await nats.connect(servers.nats_url)
    can = transforms(nc)
    await nc.close()
    if not can:
        pytest.skip("this NATS server has no subject transforms (before 2.10)")


@contextlib.contextmanager
def processes(env: dict[str, str]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started in the block (``spawn``), each stopped at its end."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in started:
            process.kill()
        for process in started:
            process.wait(timeout=30)


def spawn(started: list[subprocess.Popen[bytes]], env: dict[str, str], *args: str) -> int:
    process = subprocess.Popen(
        [sys.executable, "-m", "turnlog", *args],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    started.append(process)
    return len(started) - 1


async def shares(store: EventStore, prefix: str) -> list[int]:
    """How many partitions each runtime holds (one claims connection each), fewest first."""
    rows = await store.pool.fetch(_OWNERS, spaces(prefix, "marked")[0])
    return sorted(count for _, count in rows)


async def settled(
    store: EventStore, prefix: str, want: Callable[[list[int]], bool], within: float
) -> float:
    """Seconds until the partitions the runtimes hold (fewest first) are as wanted."""
    started = time.monotonic()
    while not want(held := await shares(store, prefix)):
        assert time.monotonic() - started < within, f"partitions held {held}"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def one_session_per_partition(client: turnlog.Client) -> list[ClientSession]:
    ids: dict[int, str] = {}
    while len(ids) < 16:
        sid = str(uuid.uuid4())
        ids.setdefault(partition_of(sid), sid)
    return [client.session("marked", ids[n], user={"id": f"u{n}"}) for n in range(16)]


def marks(path: Path) -> list[tuple[str, int, str, str, float]]:
    """(start|end, pid, session, message text, time) of every turn the app ran."""
    lines = [line.split() for line in path.read_text().splitlines() if line]
    return [(w, int(pid), sid, mid, float(t)) for w, pid, sid, mid, t in lines]


def marking(cli_env: dict[str, str], tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The file the app marks its turns in, and the runtimes' environment naming it."""
    marked = tmp_path / "marks.txt"
    marked.touch()
    return marked, cli_env | {"TURNLOG_ACK_WAIT": str(ACK_WAIT), "MARKED_FILE": str(marked)}


async def test_two_runtimes_split_the_partitions_and_move_them_as_one_joins_and_leaves(
    partitioning: None,
    cli_env: dict[str, str],
    prefix: str,
    servers: Endpoints,
    store: EventStore,
    tmp_path: Path,
) -> None:
    marked, env = marking(cli_env, tmp_path)
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    with processes(env) as started:
        spawn(started, env, "serve", "relay")
        spawn(started, env, "serve", "runtime", str(MARKED))
        await settled(store, prefix, lambda held: held == [16], within=30)
        sessions = one_session_per_partition(client)
        await asyncio.gather(*(s.send_message("alone", timeout=30) for s in sessions))
        joining = spawn(started, env, "serve", "runtime", str(MARKED))
        await settled(
            store, prefix, lambda held: held == [8, 8], within=30 + SETTLE
        )  # its start included
        rounds = await asyncio.gather(*(s.send_message("shared", timeout=30) for s in sessions))
        assert [r.reply for r in rounds] == ["done shared"] * 16
        shared = {pid for w, pid, _, mid, _ in marks(marked) if w == "start"}
        assert len(shared) == 2  # both ran turns

        started[joining].send_signal(signal.SIGTERM)  # it leaves: its partitions move back
        assert started[joining].wait(timeout=30) == 0
        await settled(store, prefix, lambda held: held == [16], within=SETTLE)
        rounds = await asyncio.gather(*(s.send_message("after", timeout=30) for s in sessions))
        assert [r.reply for r in rounds] == ["done after"] * 16
    await client.close()


@dataclass
class Sent:
    """One message on its way: its text, the send (ending with the turn's outcome) and
    whether its turn has started, or was cut off."""

    text: str
    started: asyncio.Event
    cut_off: asyncio.Event
    sending: asyncio.Task[Any] | None = None

    def seen(self, event: object) -> None:
        if isinstance(event, bus.LiveNotification) and event.text == f"working on {self.text}":
            self.started.set()
        if isinstance(event, bus.EventEnvelope) and event.type == "session.turn_interrupted":
            self.started.set()
            self.cut_off.set()


class Load:
    """Sessions each sending ``m0``, ``m1``, ... with one message waiting behind the turn
    in progress (the next is sent once a turn has started), recording what each sent,
    when each was answered, and the turns cut off (recorded interrupted, not answered)."""

    def __init__(self, client: turnlog.Client, sessions: int) -> None:
        self.sessions = [client.session("marked", user={"id": f"u{i}"}) for i in range(sessions)]
        self.sent: dict[str, list[str]] = defaultdict(list)
        self.answered: dict[str, list[float]] = defaultdict(list)
        self.interrupted: list[tuple[str, str]] = []
        self.running = True

    async def run(self) -> None:
        await asyncio.gather(*(self._converse(s) for s in self.sessions))

    async def _converse(self, session: ClientSession) -> None:
        await session.send_message("hello", timeout=30)  # subscribed before sending on
        current = self._send(session)
        while self.running:
            assert current.sending is not None
            await _first(current.sending, current.started.wait())
            following = self._send(session)  # waits in the stream behind the current turn
            await self._outcome(session, current)
            current = following
        await self._outcome(session, current)

    def _send(self, session: ClientSession) -> Sent:
        text = f"m{len(self.sent[session.id])}"
        self.sent[session.id].append(text)
        started, cut_off = asyncio.Event(), asyncio.Event()
        sent = Sent(text, started, cut_off)
        sent.sending = asyncio.create_task(
            session.send_message(text, on_event=sent.seen, timeout=30)
        )
        return sent

    async def _outcome(self, session: ClientSession, sent: Sent) -> None:
        assert sent.sending is not None
        await _first(sent.sending, sent.cut_off.wait())
        if sent.sending.done():
            assert sent.sending.result().reply == f"done {sent.text}"
            self.answered[session.id].append(time.monotonic())
        else:
            sent.sending.cancel()
            self.interrupted.append((session.id, sent.text))


async def _first(task: asyncio.Task[Any], event: Coroutine[Any, Any, Any]) -> None:
    waiting = asyncio.create_task(event)
    await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()


async def one_at_a_time_in_order(store: EventStore, session_id: str) -> list[str]:
    """The texts of the session's messages as recorded, checking that every turn ended
    (completed or interrupted) before its session's next message was recorded."""
    texts: list[str] = []
    open_turn: str | None = None
    for event in await store.keyring.unseal(await store.read_stream(session_id)):
        payload = msgspec.json.decode(event.payload)
        if event.type == "session.message_received":
            assert open_turn is None, f"{session_id}: a turn began before {open_turn} ended"
            open_turn = payload["message_id"]
            texts.append(payload["text"])
        elif event.type in ("session.turn_completed", "session.turn_interrupted"):
            assert payload["message_id"] == open_turn, f"{session_id}: {event.type} out of turn"
            open_turn = None
    assert open_turn is None, f"{session_id}: turn {open_turn} never ended"
    return texts


def never_two_at_once(path: Path, killed: int, killed_at: float) -> Counter[tuple[str, str]]:
    """Check from the app's marks that no session ever had turns running in two places
    at once (a turn the kill cut off ran until the kill); how often the handler started
    for each message (session, text)."""
    spans: dict[str, dict[tuple[int, str], list[float]]] = defaultdict(dict)
    for what, pid, sid, text, at in marks(path):
        span = spans[sid].setdefault((pid, text), [at, killed_at if pid == killed else -1])
        if what == "end":
            span[1] = at
    starts: Counter[tuple[str, str]] = Counter()
    for sid, turns in spans.items():
        ordered = sorted(turns.items(), key=lambda t: t[1][0])
        for (_, (_, end)), (turn, (start, _)) in itertools.pairwise(ordered):
            assert 0 <= end <= start, f"{sid}: turn {turn} started before the one before ended"
        starts.update((sid, text) for _, text in turns)
    return starts


async def test_a_runtime_killed_under_load_hands_its_sessions_to_the_others(
    partitioning: None,
    cli_env: dict[str, str],
    prefix: str,
    servers: Endpoints,
    store: EventStore,
    tmp_path: Path,
) -> None:
    marked, env = marking(cli_env, tmp_path)
    client = await turnlog.Client.connect(servers.nats_url, prefix=prefix)
    load = Load(client, sessions=24)
    with processes(env) as started:
        spawn(started, env, "serve", "relay")
        victim = [spawn(started, env, "serve", "runtime", str(MARKED)) for _ in range(3)][1]
        await settled(store, prefix, three_ways, within=45)
        loading = asyncio.create_task(load.run())
        await asyncio.sleep(3.0)
        started[victim].send_signal(signal.SIGKILL)
        killed_at, killed_wall = time.monotonic(), time.time()
        started[victim].wait(timeout=30)
        moved = await settled(store, prefix, lambda held: held == [8, 8], within=SETTLE)
        await asyncio.sleep(ACK_WAIT + 3.0)  # the load goes on, on the two others
        load.running = False
        await asyncio.wait_for(loading, timeout=60)
    await client.close()

    for session in load.sessions:  # every session went on after the kill
        assert any(t > killed_at + ACK_WAIT for t in load.answered[session.id]), session.id
        recorded = await one_at_a_time_in_order(store, session.id)
        assert recorded == ["hello", *load.sent[session.id]]
    starts = never_two_at_once(marked, started[victim].pid, killed_wall)
    turns = sum(len(sent) for sent in load.sent.values())
    assert not load.interrupted  # every turn the kill cut off was resumed and answered
    resumed = 0
    for session in load.sessions:
        for text in load.sent[session.id]:
            ran = starts[(session.id, text)]
            assert ran in (1, 2), (session.id, text, ran)
            resumed += ran == 2  # cut off by the kill, run again by the next owner
    assert resumed <= len(load.sessions)  # at most the one in progress in each
    print(
        f"\n{turns} turns in {len(load.sessions)} sessions; partitions moved"
        f" {moved:.1f} s after the kill; {resumed} turn(s) cut off by it, resumed"
    )


def three_ways(held: list[int]) -> bool:
    return len(held) == 3 and sum(held) == 16 and max(held) <= 6
