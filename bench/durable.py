"""turnlog against DBOS, side by side in one run: turns/s, and the cost of recovering a
turn that was cut off.

    python -m bench.durable [--seconds 5] [--sessions 1,10,100] [--rounds 3] [--recoveries 3]

The same turn on each side, on one PostgreSQL server with a scratch database each: the
user's message, a reply and one data key (the session's turn counter), all durable before
the session's next turn. turnlog runs it as a handler on its in-process runtime
(bench/durable_turnlog.py); DBOS as a workflow of three steps whose id is the message id
(bench/durable_dbos.py). Each row runs in a child process of its own, warmed up before
it is measured, the sides alternating; every row runs ``--rounds`` times and the table
shows the round of median turns/s.

Recovery: a child process runs a session's second turn and is killed (SIGKILL) once that
turn's reply is on record; a fresh child recovers it, timing from connecting (turnlog) or
launching DBOS until the turn has ended on record, and reports what the record shows
(a turn resumed and completed, or one recorded as interrupted).
Prints markdown tables and writes ``bench/results/durable.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from bench import durable_report as report
from bench.common import machine, scratch_database, server_url
from turnlog.services.bootstrap import aio

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("results")
CHILD_ENV = dict(os.environ, TURNLOG_LOG_LEVEL="warning")
CUT_TIMEOUT = 60.0  # for the cut-off turn's reply to be on record


@dataclass(frozen=True)
class System:
    module: str
    reply_on_record: str  # SQL of (session id, message id): the cut-off turn's reply is


SYSTEMS = {
    "turnlog": System(
        "bench.durable_turnlog",
        """SELECT count(*) > 0 FROM turnlog_events WHERE stream_id = $1
           AND correlation_id = $2 AND type = 'session.reply_sent'""",
    ),
    "dbos": System(
        "bench.durable_dbos",
        """SELECT EXISTS (SELECT 1 FROM durable_replies
                          WHERE session_id = $1 AND message_id = $2)
              AND EXISTS (SELECT 1 FROM dbos.operation_outputs
                          WHERE workflow_uuid = $2 AND function_name = 'record_reply')""",
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
    warmup_turns: int
    transactions: int  # committed in the side's database while the row's process ran
    turns_per_s: float = field(init=False)
    tx_per_turn: float = field(init=False)

    def __post_init__(self) -> None:
        self.turns_per_s = self.turns / self.seconds
        self.tx_per_turn = self.transactions / (self.turns + self.warmup_turns)


@dataclass
class Options:
    seconds: float
    sessions: list[int]
    rounds: int
    recoveries: int
    out: Path | None


async def child(system: str, *args: str, timeout: float) -> dict[str, Any]:
    """Run a side's child process to its end; the JSON object it printed last."""
    command = [sys.executable, "-m", SYSTEMS[system].module, *args]
    proc = await asyncio.create_subprocess_exec(
        *command, cwd=ROOT, env=CHILD_ENV, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:  # timed out, or this run was cancelled
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        tail = err.decode(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(command[2:4])} exited {proc.returncode}:\n{tail}")
    found: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return found


def alternating(i: int) -> list[str]:
    """The sides in the order of round ``i``: each goes first every other round."""
    return list(SYSTEMS) if i % 2 == 0 else list(reversed(SYSTEMS))


async def commits(url: str, db: str) -> int:
    """Transactions committed in ``db`` so far (its backends report theirs as they end)."""
    conn = await asyncpg.connect(url)
    try:
        name = urlsplit(db).path.lstrip("/")
        found = await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = $1", name
        )
        return int(found)
    finally:
        await conn.close()


async def rate_row(url: str, system: str, db: str, sessions: int, seconds: float) -> Row:
    before = await commits(url, db)
    found = await child(
        system, "rate", "--db", db, "--sessions", str(sessions), "--seconds", str(seconds),
        timeout=seconds + 120,
    )  # fmt: skip
    await asyncio.sleep(0.2)  # the child's backends have ended and reported
    row = Row(system, sessions, transactions=await commits(url, db) - before, **found)
    print(
        f"  {report.LABELS[system]}, {sessions} sessions: {row.turns_per_s:,.0f} turns/s, "
        f"p50 {row.p50_ms:.1f} ms, p99 {row.p99_ms:.1f} ms, "
        f"{row.tx_per_turn:.1f} transactions a turn",
        flush=True,
    )
    return row


async def throughput(
    url: str, dbs: dict[str, str], seconds: float, concurrency: list[int], rounds: int
) -> list[Row]:
    """Every row ``rounds`` times, the sides alternating from row to row and round to
    round (on a shared machine a neighbour's load falls on both sides alike)."""
    rows = []
    for n in range(rounds):
        for i, sessions in enumerate(concurrency):
            for system in alternating(n + i):
                rows.append(await rate_row(url, system, dbs[system], sessions, seconds))
    return rows


def medians(rows: list[Row]) -> list[Row]:
    """Of each side's rows at a concurrency, the one of median turns/s (the lower of the
    two middle ones for an even count)."""
    found = []
    for system in SYSTEMS:
        for sessions in sorted({r.sessions for r in rows}):
            mine = sorted(
                (r for r in rows if (r.system, r.sessions) == (system, sessions)),
                key=lambda r: r.turns_per_s,
            )
            if mine:
                found.append(mine[(len(mine) - 1) // 2])
    return found


async def cut_off(system: str, db: str, session_id: str, message_id: str) -> None:
    """Start the turn that is cut off in a child process and kill it (SIGKILL) as soon as
    its reply is on record."""
    conn = await asyncpg.connect(db)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", SYSTEMS[system].module, "cut", "--db", db,
        "--session", session_id, "--message", message_id,
        cwd=ROOT, env=CHILD_ENV, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    on_record = False
    try:
        deadline = time.monotonic() + CUT_TIMEOUT
        while proc.returncode is None and time.monotonic() < deadline:
            on_record = await conn.fetchval(SYSTEMS[system].reply_on_record, session_id, message_id)
            if on_record:
                break
            await asyncio.sleep(0.005)
    finally:
        if proc.returncode is None:
            proc.kill()
        _, err = await proc.communicate()
        await conn.close()
    if not on_record:
        tail = err.decode(errors="replace")[-2000:]
        raise RuntimeError(f"{system}: the cut-off turn's reply never came on record:\n{tail}")


async def recoveries(dbs: dict[str, str], count: int) -> list[dict[str, Any]]:
    runs = []
    for i in range(count):
        for system in alternating(i):
            session_id, message_id = str(uuid.uuid4()), uuid.uuid4().hex
            await cut_off(system, dbs[system], session_id, message_id)
            found = await child(
                system, "recover", "--db", dbs[system], "--session", session_id,
                "--message", message_id, timeout=120,
            )  # fmt: skip
            runs.append({"system": system, **found})
            print(f"  {report.LABELS[system]}: {report.recovery_line(system, found)}", flush=True)
    return runs


async def postgres_version(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def run(options: Options) -> dict[str, Any]:
    found: dict[str, Any] = {"load_average": os.getloadavg(), "versions": versions()}
    print(
        f"{machine()}; {options.seconds:g} s per row; load average "
        + " ".join(f"{x:.2f}" for x in found["load_average"]),
        flush=True,
    )
    with server_url() as url:
        found["postgres"] = await postgres_version(url)
        async with scratch_database(url) as turnlog_db, scratch_database(url) as dbos_db:
            dbs = {"turnlog": turnlog_db, "dbos": dbos_db}
            found["rounds"] = await throughput(
                url, dbs, options.seconds, options.sessions, options.rounds
            )
            found["throughput"] = medians(found["rounds"])
            found["recovery"] = await recoveries(dbs, options.recoveries)
    return found


def versions() -> dict[str, str]:
    found = {}
    for name in ("turnlog", "dbos", "sqlalchemy", "psycopg", "asyncpg", "uvloop"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    found["python"] = sys.version.split()[0]
    return found


def save(found: dict[str, Any], text: str, options: Options, when: str) -> None:
    assert options.out is not None
    options.out.mkdir(parents=True, exist_ok=True)
    data = {
        "date": when,
        "machine": machine(),
        "postgres": found["postgres"],
        "load_average_at_start": found["load_average"],
        "versions": found["versions"],
        "options": {
            "seconds": options.seconds,
            "sessions": options.sessions,
            "rounds": options.rounds,
            "recoveries": options.recoveries,
        },
        "throughput": [asdict(r) for r in found["throughput"]],
        "rounds": [asdict(r) for r in found["rounds"]],
        "recovery": found["recovery"],
        "notes": report.NOTES,
    }
    (options.out / "durable.json").write_text(json.dumps(data, indent=2) + "\n")
    (options.out / "durable.md").write_text(text + "\n")
    print(f"\nwrote {options.out}/durable.json, durable.md", flush=True)


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.durable", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="per row (default 5)")
    parser.add_argument("--sessions", default="1,10,100", help="concurrency levels")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each row (median)")
    parser.add_argument("--recoveries", type=int, default=3, help="cut-off turns per side")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"default {RESULTS}")
    parser.add_argument("--no-save", action="store_true", help="print only, write nothing")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("dbos") is None:
        parser.error("missing dbos: install the bench extra (pip install -e '.[bench]')")
    return Options(
        seconds=args.seconds,
        sessions=[int(n) for n in args.sessions.split(",")],
        rounds=args.rounds,
        recoveries=args.recoveries,
        out=None if args.no_save else args.out,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    options = parse(argv)
    found = aio.run(run(options))
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = report.render(found, options, machine(), when)
    print()
    print(text, flush=True)
    if options.out is not None:
        save(found, text, options, when)
    return found


if __name__ == "__main__":
    main()
