"""Kill -9 of ``turnlog run`` at random moments while messages wait on JetStream.

    python -m bench.faults [--rounds 100] [--sessions 50] [--messages 6000] [--runtimes 1]

Publishes MESSAGES messages for SESSIONS sessions, then, ROUNDS times, waits a random
moment and kills one of the RUNTIMES running runtimes with SIGKILL, starting another in
its place; then lets the last ones finish. Checks that every message was answered exactly
once (one completed turn and one reply per message in the log, no reply twice on the live
subject), that no turn was left interrupted, that each session's ``data["seen"]`` is its
messages in the order sent, that no session's turns ran in two processes at once (from
the handler's marker file), and that the log verifies. Reports how many turns were cut
off and resumed, and what a resumed turn cost.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import signal
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from turnlog.contracts import bus
from turnlog.services.adapters.embedded.processes import free_port
from turnlog.services.adapters.nats.router import registry
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.verify import verify
from turnlog.services.app.sessions.repository import SessionRepository
from turnlog.services.bootstrap import aio

APP = Path(__file__).with_name("faults_app.py")
_live = msgspec.json.Decoder(bus.Live)


@dataclass
class Report:
    sent: int = 0
    kills: int = 0
    seconds: float = 0.0
    completed_once: int = 0  # messages with exactly one completed turn
    replied_once: int = 0  # messages with exactly one reply on record
    doubled_live: int = 0  # replies delivered more than once on the live subject
    interrupted: int = 0
    cut_off: int = 0  # turns taken up again after a kill
    resumed_answered: int = 0
    resume_ms: list[float] = field(default_factory=list)  # resumed to completed, each
    data_in_order: int = 0  # sessions whose data["seen"] is their messages in order
    sessions: int = 0
    overlaps: int = 0  # turns of one session running in two processes at once
    verified: bool = False

    @property
    def ok(self) -> bool:
        return (
            self.completed_once == self.replied_once == self.sent
            and self.doubled_live == self.interrupted == self.overlaps == 0
            and self.resumed_answered == self.cut_off
            and self.data_in_order == self.sessions
            and self.verified
        )

    def lines(self) -> list[str]:
        p50 = statistics.median(self.resume_ms) if self.resume_ms else 0.0
        return [
            f"messages sent:                 {self.sent:,} for {self.sessions} sessions",
            f"runtimes killed (SIGKILL):     {self.kills} in {self.seconds:.1f} s",
            f"answered exactly once:         {self.completed_once:,} turns, "
            f"{self.replied_once:,} replies on record",
            f"replies twice on live subject: {self.doubled_live}",
            f"turns left interrupted:        {self.interrupted}",
            f"turns cut off and resumed:     {self.cut_off} ({self.resumed_answered} answered)",
            f"resumed turn, resumed->done:   p50 {p50:.1f} ms",
            f"sessions with data in order:   {self.data_in_order} of {self.sessions}",
            f"turns of a session overlapping in two processes: {self.overlaps}",
            f"log verifies:                  {self.verified}",
        ]


@dataclass
class Runtimes:
    """The ``turnlog run`` processes of the app, and when each one was killed."""

    env: dict[str, str]
    home: Path
    running: list[asyncio.subprocess.Process] = field(default_factory=list)
    killed: dict[int, float] = field(default_factory=dict)  # pid -> time.time()

    async def start(self) -> None:
        log = self.home / f"run-{len(self.running) + len(self.killed)}.log"
        with log.open("wb") as out:
            self.running.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "turnlog", "run", str(APP), env=self.env,
                    stdout=asyncio.subprocess.DEVNULL, stderr=out,
                )
            )  # fmt: skip

    async def working(self, marker: Path, left: Callable[[], Awaitable[int]]) -> None:
        """Wait until a running runtime has started a turn since the last kill (or 15 s,
        or no message is left): a kill while none works cuts nothing off."""
        since = max(self.killed.values(), default=0.0)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and await left():
            started = _pids(await asyncio.to_thread(_read, marker), since=since)
            if any(str(p.pid) in started for p in self.running):
                return
            await asyncio.sleep(0.05)

    async def kill_one(self, rng: random.Random, marker: Path) -> None:
        """Kill one of the runtimes that started a turn in the last second (any, when
        none did)."""
        lately = _pids(await asyncio.to_thread(_read, marker), since=time.time() - 1.0)
        busy = [p for p in self.running if str(p.pid) in lately] or self.running
        process = busy[rng.randrange(len(busy))]
        self.running.remove(process)
        process.send_signal(signal.SIGKILL)
        self.killed[process.pid] = time.time()
        await process.wait()

    async def stop(self) -> None:
        for process in self.running:
            if process.returncode is None:
                process.terminate()
        for process in self.running:
            try:
                await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                process.kill()
                await process.wait()


def runtime_env(database_url: str, nats_url: str, prefix: str, home: Path) -> dict[str, str]:
    return dict(
        os.environ,
        TURNLOG_DATABASE_URL=database_url,
        TURNLOG_NATS_URL=nats_url,
        TURNLOG_SUBJECT_PREFIX=prefix,
        TURNLOG_HOME=str(home),
        TURNLOG_LOG_LEVEL="warning",
        TURNLOG_HTTP_PORT=str(free_port()),
        TURNLOG_ACK_WAIT=os.environ.get("TURNLOG_ACK_WAIT", "2"),
        FAULTS_MARKER=str(home / "turns.txt"),
    )


async def served(js: JetStreamContext, subjects: Subjects, runtimes: Runtimes) -> None:
    """Wait until a runtime has registered the app (its consumers exist from then on)."""
    apps = await registry(js, subjects)
    for _ in range(600):
        if any(p.returncode is not None for p in runtimes.running):
            raise RuntimeError("turnlog run exited at start; see its log in " + str(runtimes.home))
        try:
            await apps.get("faults")
            return
        except Exception:
            await asyncio.sleep(0.1)
    raise RuntimeError("turnlog run did not start serving within 60 s")


async def publish(js: JetStreamContext, subjects: Subjects, sessions: list[list[str]]) -> None:
    """Every message, each session's in order (a session's subject keeps them in order)."""

    async def one(session_id: str, texts: list[str]) -> None:
        for text in texts:
            message = bus.InboundMessage(
                message_id=text, session_id=session_id, user=bus.UserRef(id="u"), text=text
            )
            subject = subjects.inbound("faults", session_id)
            data = msgspec.json.encode(message)
            await js.publish(subject, data, headers={"Nats-Msg-Id": text}, timeout=30)

    ids = [str(uuid.uuid4()) for _ in sessions]
    await asyncio.gather(*(one(sid, texts) for sid, texts in zip(ids, sessions, strict=True)))
    sessions[:] = [[sid, *texts] for sid, texts in zip(ids, sessions, strict=True)]


async def faults(
    database_url: str,
    nats_url: str,
    home: Path,
    *,
    messages: int = 6_000,
    sessions: int = 50,
    rounds: int = 100,
    runtimes: int = 1,
    pause: tuple[float, float] = (0.0, 1.0),
    prefix: str | None = None,
    wait: float = 600.0,
    seed: int = 15,
) -> Report:
    """Run the fault rounds against these servers (a database of its own)."""
    rng = random.Random(seed)
    prefix = prefix or f"faults{uuid.uuid4().hex[:8]}"
    subjects = Subjects(prefix)
    store = await EventStore.connect(database_url, min_size=1, max_size=4)
    nc = await nats.connect(nats_url)
    procs = Runtimes(runtime_env(database_url, nats_url, prefix, home), home)
    live: Counter[str] = Counter()

    async def heard(msg: Msg) -> None:
        item = _live.decode(msg.data)
        if isinstance(item, bus.LiveReply):
            live[item.text] += 1

    plan = [[f"s{s}m{m}" for m in range(s, messages, sessions)] for s in range(sessions)]
    started = time.monotonic()
    try:
        for _ in range(runtimes):
            await procs.start()
        js = nc.jetstream()
        await served(js, subjects, procs)
        await nc.subscribe(f"{prefix}.live.faults.*", cb=heard)
        await publish(js, subjects, plan)

        async def left() -> int:
            return messages - await _answered(store)

        for _ in range(rounds):
            await procs.working(home / "turns.txt", left)
            await asyncio.sleep(rng.uniform(*pause))
            await procs.kill_one(rng, home / "turns.txt")
            await procs.start()
        await _until_answered(store, messages, wait)
        seconds = time.monotonic() - started
        report = await _check(store, plan, live, home / "turns.txt", procs.killed)
        report.kills, report.seconds = rounds, seconds
        return report
    finally:
        await procs.stop()
        await nc.close()
        await store.close()


async def _answered(store: EventStore) -> int:
    answered: int = await store.pool.fetchval(
        "SELECT count(DISTINCT correlation_id) FROM turnlog_events"
        " WHERE type IN ('session.turn_completed', 'session.turn_interrupted')"
    )
    return answered


async def _until_answered(store: EventStore, messages: int, wait: float) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and await _answered(store) < messages:  # noqa: ASYNC110
        await asyncio.sleep(0.25)


async def _check(
    store: EventStore,
    plan: list[list[str]],
    live: Counter[str],
    marker: Path,
    killed: dict[int, float],
) -> Report:
    count = await _counts(store)
    sent = [text for _, *texts in plan for text in texts]
    report = Report(sent=len(sent), sessions=len(plan))
    report.completed_once = sum(count["session.turn_completed"][t] == 1 for t in sent)
    report.replied_once = sum(count["session.reply_sent"][t] == 1 for t in sent)
    report.interrupted = sum(count["session.turn_interrupted"].values())
    report.doubled_live = sum(1 for n in live.values() if n > 1)
    resumed = set(count["session.turn_resumed"])
    report.cut_off = len(resumed)
    report.resumed_answered = sum(count["session.turn_completed"][t] == 1 for t in resumed)
    report.resume_ms = await _resume_costs(store)
    repo = SessionRepository(store)
    for session_id, *texts in plan:
        data = (await repo.load(uuid.UUID(session_id))).data
        report.data_in_order += data.get("seen") == texts
    report.overlaps = _overlaps(marker, killed)
    report.verified = not (await verify(store)).broken
    return report


async def _counts(store: EventStore) -> dict[str, Counter[str]]:
    rows = await store.pool.fetch(
        "SELECT type, correlation_id, count(*) AS n FROM turnlog_events"
        " WHERE type IN ('session.turn_completed', 'session.reply_sent',"
        " 'session.turn_interrupted', 'session.turn_resumed') GROUP BY 1, 2"
    )
    counts: dict[str, Counter[str]] = {
        kind: Counter()
        for kind in (
            "session.turn_completed",
            "session.reply_sent",
            "session.turn_interrupted",
            "session.turn_resumed",
        )
    }
    for row in rows:
        counts[row["type"]][row["correlation_id"]] = row["n"]
    return counts


async def _resume_costs(store: EventStore) -> list[float]:
    """Milliseconds from each turn's last ``turn_resumed`` to its ``turn_completed``."""
    rows = await store.pool.fetch(
        "SELECT r.correlation_id, max(r.recorded_at) AS resumed, max(c.recorded_at) AS done"
        " FROM turnlog_events r JOIN turnlog_events c"
        " ON c.correlation_id = r.correlation_id AND c.type = 'session.turn_completed'"
        " WHERE r.type = 'session.turn_resumed' GROUP BY 1"
    )
    return [(row["done"] - row["resumed"]).total_seconds() * 1000 for row in rows]


def _pids(marks: str, since: float = 0.0) -> set[str]:
    """The processes that marked a turn's start in ``marks`` at ``since`` or later."""
    found = set()
    for line in marks.splitlines():
        pid, _, _, what, at = line.split(" ")
        if what == "start" and float(at) >= since:
            found.add(pid)
    return found


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _overlaps(marker: Path, killed: dict[int, float]) -> int:
    """Turns that started in one process while the same session's turn ran in another
    (one killed ends at its kill)."""
    spans: dict[str, list[tuple[float, float, int]]] = {}
    opened: dict[tuple[int, str, str], float] = {}
    for line in _read(marker).splitlines():
        pid, session, message, what, at = line.split(" ")
        key = (int(pid), session, message)
        if what == "start":
            opened[key] = float(at)
        elif key in opened:
            spans.setdefault(session, []).append((opened.pop(key), float(at), int(pid)))
    for (pid, session, _), start in opened.items():
        spans.setdefault(session, []).append((start, killed.get(pid, float("inf")), pid))
    overlaps = 0
    for runs in spans.values():
        runs.sort()
        for (_, end, pid), (start, _, other) in itertools.pairwise(runs):
            overlaps += pid != other and start < end
    return overlaps


async def main(args: argparse.Namespace) -> int:
    from bench.common import machine, scratch_database, server_url
    from turnlog.services.adapters.embedded.endpoints import endpoints
    from turnlog.services.settings import Settings

    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"turnlog-faults-{uuid.uuid4().hex[:8]}"
    home.mkdir(parents=True)
    with endpoints(Settings.from_env()) as where, server_url() as url:
        async with scratch_database(url) as db:
            report = await faults(
                db, where.nats_url, home, messages=args.messages, sessions=args.sessions,
                rounds=args.rounds, runtimes=args.runtimes,
            )  # fmt: skip
    print(f"kill -9 rounds through turnlog run ({args.runtimes} runtimes) — {machine()}")
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--messages", type=int, default=6_000)
    parser.add_argument("--runtimes", type=int, default=1)
    raise SystemExit(aio.run(main(parser.parse_args())))
