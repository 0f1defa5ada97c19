"""A soak of hostile and valid input through ``turnlog run``.

    python -m bench.soak [--messages 10000] [--sessions 50]

Publishes MESSAGES inbound messages for SESSIONS sessions on JetStream, as any producer
would: valid ones, valid ones in odd Unicode (right-to-left marks, a BOM, combining
marks, controls, noncharacters), and hostile ones (U+0000, escaped lone surrogates,
bytes that are not UTF-8, JSON nested past the limit, numbers out of range, reserved
user ids, oversized bodies, bytes that are not JSON, unknown fields, keys too long,
mismatched subjects). Then waits until each one is accounted for, either as a turn (its
``session.turn_completed``, or the ``session.data_set`` of a ``set_vars``) or as a dead
letter carrying its bytes, and checks that the process stayed up, the projections
reached the end of the log and equal their rebuild, the log verifies, the logs hold no
traceback, and the streams stay bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import msgspec
import nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from turnlog.contracts import bus
from turnlog.domain.values import MAX_DEPTH
from turnlog.projections.catalog import PROJECTIONS
from turnlog.services.adapters.embedded.processes import free_port
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.projector.check import check
from turnlog.services.adapters.postgres.verify import verify
from turnlog.services.bootstrap import aio

APP = Path(__file__).with_name("soak_app.py")
ODD = [
    "\u202eevil\u202c",
    "\ufeffbom",
    "e\u0301\u0301\u0301",
    "\uffff\ufffe",
    "tab\t\x01\x7f",
    "😀",
    "",
    "ש",
]


@dataclass
class Sent:
    """What was published: each payload's message id (None when it has none to find it
    by) and kind, and what is expected of it."""

    payloads: dict[bytes, tuple[str | None, str]] = field(default_factory=dict)
    expected: Counter[str] = field(default_factory=Counter)


@dataclass
class Report:
    sent: int
    turns: int
    dead_letters: Counter[str]
    accounted: int
    doubled: int
    seconds: float
    tracebacks: int
    projections_equal: bool
    verified: bool
    lag: int
    streams: dict[str, tuple[int, int]]  # name -> (messages, bytes)
    process_up: bool

    def lines(self) -> list[str]:
        letters = ", ".join(f"{r} {n}" for r, n in sorted(self.dead_letters.items()))
        streams = ", ".join(f"{s} {m} msgs / {b:,} B" for s, (m, b) in self.streams.items())
        return [
            f"sent {self.sent:,}: turns {self.turns:,}, dead letters"
            f" {sum(self.dead_letters.values()):,} ({letters})",
            f"accounted {self.accounted:,} of {self.sent:,}, doubled {self.doubled},"
            f" tracebacks {self.tracebacks}, in {self.seconds:.1f} s",
            f"projections: lag {self.lag}, equal to their rebuild: {self.projections_equal};"
            f" log verifies: {self.verified}; process up: {self.process_up}",
            f"streams: {streams}",
        ]


def hostile(n: int, session: str, first: bool, rng: random.Random) -> tuple[str, bytes, str]:
    """Message ``n`` for ``session``: its subject token, its bytes, what it is."""
    mid = f"soak-{n}"
    user = {"id": f"user-{session[:8]}"}
    message = {"kind": "message", "message_id": mid, "session_id": session, "user": user}
    if first:
        return session, msgspec.json.encode(message | {"text": f"hello {n}"}), "valid"
    kind = rng.choice(KINDS)
    if kind == "valid":
        body = message | {"text": f"{n} " + rng.choice(ODD) + rng.choice(ODD)}
    elif kind == "nul":
        body = message | {"text": f"{n} a\x00b"}
    elif kind == "surrogate":
        raw = msgspec.json.encode(message | {"text": f"{n} SURROGATE"})
        return session, raw.replace(b"SURROGATE", b"\\ud800x"), kind
    elif kind == "not_utf8":
        raw = msgspec.json.encode(message | {"text": f"{n} BYTES"})
        return session, raw.replace(b"BYTES", b"\xff\xfe"), kind
    elif kind == "reserved_user":
        new = str(uuid.uuid4())
        body = message | {"session_id": new, "user": {"id": "org:acme"}, "text": f"{n}"}
        return new, msgspec.json.encode(body), kind
    elif kind == "garbage":
        return session, f"not json {n} {{".encode(), kind
    elif kind == "unknown_field":
        body = message | {"text": f"{n}", "colour": "red"}
    elif kind == "too_large":
        body = message | {"text": f"{n} " + "x" * 300_000}
    elif kind == "wrong_subject":
        return str(uuid.uuid4()), msgspec.json.encode(message | {"text": f"{n}"}), kind
    else:
        return session, _set_vars(n, mid, session, kind, rng), kind
    return session, msgspec.json.encode(body), kind


def _set_vars(n: int, mid: str, session: str, kind: str, rng: random.Random) -> bytes:
    value: object = f"value {n} {rng.choice(ODD)}"
    key = f"k{n % 7}"
    if kind == "vars_deep":
        for _ in range(MAX_DEPTH + 5):
            value = [value]
    elif kind == "vars_nul_key":
        key = f"k\x00{n}"
    elif kind == "vars_long_key":
        key = "k" * 300
    body = {"kind": "set_vars", "message_id": mid, "session_id": session}
    raw = msgspec.json.encode(body | {"variables": {key: value}})
    if kind == "vars_out_of_range":
        raw = raw.replace(msgspec.json.encode(value), b"1e309")
    return raw


KINDS = (
    ["valid"] * 12
    + ["vars_valid"] * 3
    + ["nul", "surrogate", "not_utf8", "reserved_user", "garbage", "unknown_field"]
    + ["too_large", "wrong_subject", "vars_deep", "vars_nul_key", "vars_long_key"]
    + ["vars_out_of_range"]
)


async def publish(
    js: JetStreamContext,
    subjects: Subjects,
    app: str,
    sent: Sent,
    token: str,
    raw: bytes,
    kind: str,
    n: int,
) -> None:
    mid = f"soak-{n}"
    sent.payloads[raw] = (mid, kind)
    sent.expected[kind] += 1
    subject = f"{subjects.prefix}.in.{app}.{token}"
    while True:
        try:
            await js.publish(subject, raw, headers={"Nats-Msg-Id": f"{mid}:raw"}, timeout=10)
            return
        except Exception:  # JetStream busy: publish again (the id makes it once)
            await asyncio.sleep(0.1)


async def produce(
    js: JetStreamContext,
    subjects: Subjects,
    sent: Sent,
    messages: int,
    sessions: int,
    seed: int = 7,
) -> None:
    rng = random.Random(seed)
    ids = [str(uuid.uuid4()) for _ in range(sessions)]
    per = [list(range(i, messages, sessions)) for i in range(sessions)]

    async def one(i: int) -> None:
        for j, n in enumerate(per[i]):
            token, raw, kind = hostile(n, ids[i], j == 0, rng)
            await publish(js, subjects, "soak", sent, token, raw, kind, n)

    await asyncio.gather(*(one(i) for i in range(sessions)))


class Letters:
    """Dead letters as they are published (a subscription made before the first
    message): the stream itself may drop old ones (its size limit) before the end."""

    def __init__(self) -> None:
        self.reasons: dict[bytes, str] = {}
        self._decoder = msgspec.json.Decoder(bus.DeadLetter)

    async def heard(self, msg: Msg) -> None:
        letter = self._decoder.decode(msg.data)
        self.reasons[letter.original] = letter.reason


async def accounted(
    pool: asyncpg.Pool, letters: Letters, sent: Sent
) -> tuple[int, Counter[str], int, int]:
    """Turns, dead letters by reason, payloads accounted for, and payloads both."""
    done = {
        r[0]
        for r in await pool.fetch(
            "SELECT DISTINCT correlation_id FROM turnlog_events"
            " WHERE type IN ('session.turn_completed', 'session.data_set')"
            " AND correlation_id LIKE 'soak-%'"
        )
    }
    lettered = letters.reasons
    reasons = Counter(r for raw, r in lettered.items() if raw in sent.payloads)
    ok = sum(1 for mid, _ in sent.payloads.values() if mid in done)
    both = sum(1 for raw, (mid, _) in sent.payloads.items() if mid in done and raw in lettered)
    count = sum(1 for raw, (mid, _) in sent.payloads.items() if mid in done or raw in lettered)
    return ok, reasons, count, both


@dataclass
class Serving:
    process: asyncio.subprocess.Process
    log: Path


async def serve(database_url: str, nats_url: str, prefix: str, home: Path) -> Serving:
    log = home / "soak-run.log"
    env = dict(
        os.environ,
        TURNLOG_DATABASE_URL=database_url,
        TURNLOG_NATS_URL=nats_url,
        TURNLOG_SUBJECT_PREFIX=prefix,
        TURNLOG_HOME=str(home),
        TURNLOG_LOG_LEVEL="warning",
        TURNLOG_HTTP_PORT=str(free_port()),
    )
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "turnlog",
            "run",
            str(APP),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=out,
        )
    return Serving(process, log)


async def soak(
    database_url: str,
    nats_url: str,
    home: Path,
    *,
    messages: int = 10_000,
    sessions: int = 50,
    prefix: str | None = None,
    wait: float = 600.0,
) -> Report:
    """Run the soak against these servers (a database of its own, a fresh prefix)."""
    prefix = prefix or f"soak{uuid.uuid4().hex[:8]}"
    subjects = Subjects(prefix)
    # check() rebuilds every projection at once, a connection each
    store = await EventStore.connect(database_url, min_size=1, max_size=len(PROJECTIONS) + 4)
    nc = await nats.connect(nats_url)
    serving = await serve(database_url, nats_url, prefix, home)
    sent = Sent()
    try:
        js = nc.jetstream()
        await _until_served(js, subjects, serving)
        letters = Letters()
        await nc.subscribe(f"{prefix}.dlq.>", cb=letters.heard)
        started = time.monotonic()
        await produce(js, subjects, sent, messages, sessions)
        deadline = time.monotonic() + wait
        while True:
            turns, reasons, count, both = await accounted(store.pool, letters, sent)
            if count >= len(sent.payloads) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        seconds = time.monotonic() - started
        lag = await _lag_when_caught_up(store)
        equal = all(c.ok for c in await check(store, list(PROJECTIONS.values())))
        verified = not (await verify(store)).broken
        streams = {}
        for name in (subjects.stream_in, subjects.stream_events, subjects.stream_dlq):
            state = (await js.stream_info(name)).state
            streams[name] = (state.messages, state.bytes)
        up = serving.process.returncode is None
    finally:
        if serving.process.returncode is None:
            serving.process.terminate()
            await asyncio.wait_for(serving.process.wait(), 60)
        await nc.close()
        await store.close()
    logs = serving.log.read_text(errors="replace")
    return Report(
        sent=len(sent.payloads),
        turns=turns,
        dead_letters=reasons,
        accounted=count,
        doubled=both,
        seconds=seconds,
        tracebacks=logs.count("Traceback"),
        projections_equal=equal,
        verified=verified,
        lag=lag,
        streams=streams,
        process_up=up,
    )


async def _until_served(js: JetStreamContext, subjects: Subjects, serving: Serving) -> None:
    """Wait for the app's consumer, made once its runtime is up."""
    for _ in range(600):
        if serving.process.returncode is not None:
            raise RuntimeError(f"turnlog run exited: {serving.log.read_text()[-2000:]}")
        try:
            await js.consumer_info(subjects.stream_in, f"{subjects.prefix}-runtime-soak")
            return
        except Exception:
            await asyncio.sleep(0.1)
    raise RuntimeError("turnlog run did not start serving within 60 s")


async def _lag_when_caught_up(store: EventStore, timeout: float = 120.0) -> int:
    """Events the slowest projection is behind once it stops moving (0 when caught up)."""
    deadline = time.monotonic() + timeout
    while True:
        last = await store.last_position()
        lowest = await store.pool.fetchval(
            "SELECT min(position) FROM turnlog_projection_positions WHERE name = ANY($1)",
            list(PROJECTIONS),
        )
        if lowest >= last or time.monotonic() > deadline:
            return int(last - lowest)
        await asyncio.sleep(0.2)


async def main(messages: int, sessions: int) -> int:
    from bench.common import machine, scratch_database, server_url
    from turnlog.services.adapters.embedded.endpoints import endpoints
    from turnlog.services.settings import Settings

    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"turnlog-soak-{uuid.uuid4().hex[:8]}"
    home.mkdir(parents=True)
    with endpoints(Settings.from_env()) as where, server_url() as url:
        async with scratch_database(url) as db:
            report = await soak(db, where.nats_url, home, messages=messages, sessions=sessions)
    print(f"soak through turnlog run — {machine()}")
    for line in report.lines():
        print(line)
    ok = (
        report.accounted == report.sent
        and report.tracebacks == 0
        and report.process_up
        and report.projections_equal
        and report.verified
        and report.lag == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=50)
    args = parser.parse_args()
    raise SystemExit(aio.run(main(args.messages, args.sessions)))
