"""Round trips through NATS, with the app served by ``turnlog`` processes of its own.

    python -m bench.bus [--seconds 5] [--sessions 1,10,100] [--runtimes 1,2,3]
                        [--layout run,split] [--save LABEL] [--report LABEL,LABEL]

Each producer (a session of this process) sends a message and waits for its turn to
complete. Two figures per round: the reply round trip, from the publish on
``turnlog.in`` to the reply arriving on the live subject (sent only once the reply is
on record); and the completion, to the turn's ``session.turn_completed`` arriving on
``turnlog.events`` through the relay. Each row also gives the CPU time (user + system)
per turn of every process over the measured window: each turnlog process, the embedded
NATS and PostgreSQL servers (when embedded) and the producers.

Layouts (``--layout``, one or both):

- ``run``: the first runtime is ``turnlog run APP`` (runtime, relay, projector and query
  API in one process); further runtimes are ``turnlog serve runtime APP`` (a second
  ``turnlog run`` would bring a second relay and projector repeating the first ones' work).
- ``split``: compose.yaml's shape, ``--runtimes`` × ``turnlog serve runtime APP``, one
  ``turnlog serve relay`` and one ``turnlog serve projector``: each part's CPU apart, from
  which the 16-core prediction is made.

``--runtimes 1,2,3`` runs each layout once per count, each time on a fresh database and
subject prefix; the runtimes share the app's sessions by partition (on NATS 2.10 and
later), and are measured once they have had time to share them.

``--save LABEL`` adds the run to ``bench/results/bus-LABEL.json``; ``--report
before,after`` writes ``bench/results/bus.md`` from the runs saved under those labels.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from bench import busreport
from bench.common import scratch_database, server_url
from bench.cpu import CpuMeter, embedded_servers
from turnlog.contracts import bus
from turnlog.services.adapters.embedded.endpoints import Endpoints, endpoints
from turnlog.services.adapters.embedded.processes import free_port
from turnlog.services.adapters.embedded.servers import EmbeddedInfra
from turnlog.services.adapters.nats.client import Client, ClientSession
from turnlog.services.bootstrap import aio
from turnlog.services.settings import Settings

APP = Path(__file__).with_name("echo_app.py")
LAYOUTS = ("run", "split")
SHARING = 12.0  # seconds for several runtimes to start and share the partitions
PACED = (10, 50.0)  # sessions, messages a second each: the chat-like row


class Round(NamedTuple):
    turns: int
    seconds: float
    replies: list[float]  # ms
    completions: list[float]  # ms
    cpu: dict[str, float]  # label -> CPU seconds over the round


async def converse(
    session: ClientSession, seconds: float, interval: float = 0.0
) -> tuple[list[float], list[float]]:
    """Turns back to back, or (``interval`` > 0) one turn every ``interval`` seconds;
    the reply round trips and completions (ms)."""
    replies: list[float] = []
    completions: list[float] = []
    deadline = time.perf_counter() + seconds
    due = time.perf_counter() + random.uniform(0, interval)  # sessions out of step
    while time.perf_counter() < deadline:
        if interval:
            due += interval
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        started = time.perf_counter()

        def on_event(item: object, started: float = started) -> None:
            if isinstance(item, bus.LiveReply):
                replies.append((time.perf_counter() - started) * 1000)

        await session.send_message(f"m{len(completions)}", on_event=on_event)
        completions.append((time.perf_counter() - started) * 1000)
    return replies, completions


async def measure(
    nats_url: str,
    prefix: str,
    sessions: int,
    seconds: float,
    rate: float = 0.0,
    meter: CpuMeter | None = None,
) -> Round:
    """One round: ``sessions`` producers, each warmed up by a first turn before the clock
    (and ``meter``) starts; ``rate`` > 0: each sends ``rate`` messages a second instead
    of back to back."""
    client = await Client.connect(nats_url, prefix=prefix)
    interval = 1 / rate if rate else 0.0
    try:
        talks = [client.session("echo", user={"id": "bench"}) for _ in range(sessions)]
        await asyncio.gather(*(s.send_message("warm up", timeout=120) for s in talks))
        before = meter.snapshot() if meter else {}
        started = time.perf_counter()
        results = await asyncio.gather(*(converse(s, seconds, interval) for s in talks))
        elapsed = time.perf_counter() - started
        cpu = CpuMeter.spent(before, meter.snapshot()) if meter else {}
    finally:
        await client.close()
    replies = [x for r, _ in results for x in r]
    completions = [x for _, c in results for x in c]
    return Round(len(completions), elapsed, replies, completions, cpu)


def commands(layout: str, runtimes: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The ``turnlog`` command line of each process of ``layout``, by label: those that
    start first (the runtime that consumes the app's messages, and the relay and
    projector), and the further runtimes, started once the first one serves."""
    app = str(APP)
    extra = {f"runtime {i}": ["serve", "runtime", app] for i in range(2, runtimes + 1)}
    if layout == "run":
        return {"run": ["run", app]}, extra
    first = {"runtime 1": ["serve", "runtime", app]}
    return first | {"relay": ["serve", "relay"], "projector": ["serve", "projector"]}, extra


async def settled(pids: list[int], timeout: float = 30.0) -> None:
    """Until none of ``pids`` spends more than 10% of a core (done starting up)."""
    meter = CpuMeter()
    for pid in pids:
        meter.add(str(pid), pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = meter.snapshot()
        await asyncio.sleep(0.5)
        if max(CpuMeter.spent(before, meter.snapshot()).values()) < 0.05:
            return


@asynccontextmanager
async def deployment(
    db: str, nats_url: str, layout: str = "run", runtimes: int = 1
) -> AsyncIterator[tuple[str, dict[str, int]]]:
    """The echo app served on ``db`` by the processes of ``layout``; yields the subject
    prefix they use and their pids by label, once the first runtime has answered a turn
    (so that it, not one started after it, consumes the app's messages). Stopped
    (SIGTERM) at the end."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    env = dict(
        os.environ,
        TURNLOG_DATABASE_URL=db,
        TURNLOG_NATS_URL=nats_url,
        TURNLOG_SUBJECT_PREFIX=prefix,
        TURNLOG_LOG_LEVEL="warning",
    )
    started: dict[str, asyncio.subprocess.Process] = {}
    try:
        for group in commands(layout, runtimes):
            for label, argv in group.items():
                own = env | {"TURNLOG_HTTP_PORT": str(free_port())}
                started[label] = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "turnlog", *argv, env=own
                )
            await measure(nats_url, prefix, 1, 0.0)  # a turn answered: they serve
        await settled([p.pid for p in started.values()])
        if runtimes > 1:
            await asyncio.sleep(SHARING)  # the runtimes share the app's partitions
        yield prefix, {label: p.pid for label, p in started.items()}
    finally:
        for process in started.values():
            if process.returncode is None:
                process.terminate()
        for process in started.values():
            await asyncio.wait_for(process.wait(), timeout=60)


@asynccontextmanager
async def serving(db: str, nats_url: str) -> AsyncIterator[str]:
    """``turnlog run`` serving the echo app on ``db`` in a child process; yields the
    subject prefix it listens on."""
    async with deployment(db, nats_url) as (prefix, _):
        yield prefix


@dataclass(frozen=True)
class Options:
    seconds: float
    sessions: list[int]
    runtimes: list[int]
    layouts: list[str]
    save: str | None
    report: list[str]


def meter_for(pids: dict[str, int], where: Endpoints, settings: Settings) -> CpuMeter:
    meter = CpuMeter()
    for label, pid in pids.items():
        meter.add(label, pid)
    infra = EmbeddedInfra(settings.home)
    embedded_servers(meter, infra, postgres=where.database_embedded, nats=where.nats_embedded)
    meter.add("producers", os.getpid())
    return meter


async def deployed(
    options: Options, where: Endpoints, url: str, layout: str, runtimes: int
) -> list[busreport.Row]:
    """The rows of one deployment: each ``--sessions`` back to back, then paced."""
    rows: list[busreport.Row] = []
    async with (
        scratch_database(url) as db,
        deployment(db, where.nats_url, layout, runtimes) as (prefix, pids),
    ):
        meter = meter_for(pids, where, Settings.from_env())
        plan = [(n, 0.0) for n in options.sessions] + [PACED]
        for sessions, rate in plan:
            result = await measure(where.nats_url, prefix, sessions, options.seconds, rate, meter)
            row = busreport.row(layout, runtimes, sessions, rate, result)
            print(f"  {busreport.progress(row)}", flush=True)
            rows.append(row)
    return rows


async def bench(options: Options) -> list[busreport.Row]:
    settings = Settings.from_env()
    rows: list[busreport.Row] = []
    with endpoints(settings) as where, server_url() as url:
        for layout in options.layouts:
            for runtimes in options.runtimes:
                print(f"{layout} layout, {runtimes} runtime(s):", flush=True)
                rows += await deployed(options, where, url, layout, runtimes)
    return rows


def parse(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bus", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="per row")
    parser.add_argument("--sessions", default="1,10,100", help="concurrency levels")
    parser.add_argument("--runtimes", default="1", help="runtime processes, e.g. 1,2,3")
    parser.add_argument("--layout", default="run", help="run, split or run,split")
    parser.add_argument("--save", metavar="LABEL", help="add the run to bus-LABEL.json")
    parser.add_argument(
        "--report", metavar="LABELS", default="", help="write bus.md from these labels' runs"
    )
    args = parser.parse_args(argv)
    layouts = [x for x in args.layout.split(",") if x]
    if not set(layouts) <= set(LAYOUTS):
        parser.error(f"--layout: one or more of {', '.join(LAYOUTS)}")
    return Options(
        seconds=args.seconds,
        sessions=[int(n) for n in args.sessions.split(",")],
        runtimes=[int(n) for n in args.runtimes.split(",")],
        layouts=layouts,
        save=args.save,
        report=[x for x in args.report.split(",") if x],
    )


def main(argv: Sequence[str] | None = None) -> None:
    options = parse(argv)
    if options.report:
        print(busreport.write_report(options.report))
        return
    load = os.getloadavg()
    rows = aio.run(bench(options))
    print()
    print(busreport.render_run(rows, options.seconds, load))
    if options.save:
        path = busreport.save(options.save, rows, vars(options), load)
        print(f"\nadded this run to {path}")


def arguments() -> tuple[float, list[int], int]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sessions", default="1,10,100")
    parser.add_argument("--runtimes", type=int, default=1)
    args = parser.parse_args()
    return args.seconds, [int(n) for n in args.sessions.split(",")], max(args.runtimes, 1)


if __name__ == "__main__":
    main()
