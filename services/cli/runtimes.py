"""``turnlog runtimes``: the live runtimes of each app, whether each consumes some of the
app's messages (active, with the partitions it owns) or stands by, and its turns in
flight and per second."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from turnlog.services.app.partitions import ranges
from turnlog.services.settings import Settings

_encode = msgspec.json.Encoder().encode


def add_parser(sub: Any) -> None:
    """The ``runtimes`` command on ``sub`` (the CLI's subparsers)."""
    runtimes = sub.add_parser(
        "runtimes",
        help="the live runtimes of each app: active or standby, partitions, turns/s, in flight",
    )
    runtimes.add_argument("--json", action="store_true", help="one JSON array")
    runtimes.set_defaults(handler=_runtimes)


class Runtime(msgspec.Struct, frozen=True, kw_only=True):
    """One app's runtime in one live process, as the command lists it."""

    app: str
    process: str
    host: str
    pid: int
    active: bool
    in_flight: int
    turns: int
    turns_per_second: float
    partitions: list[int]


def _runtimes(args: argparse.Namespace, settings: Settings) -> int:
    from turnlog.services.adapters.postgres.eventstore import EventStore
    from turnlog.services.bootstrap.commands import on_log
    from turnlog.services.bootstrap.health import live_processes

    async def run(store: EventStore) -> list[Runtime]:
        found = [
            Runtime(
                app=r.app, process=p.id, host=p.host, pid=p.pid, active=r.active,
                in_flight=r.in_flight, turns=r.turns, turns_per_second=r.turns_per_second,
                partitions=r.partitions,
            )
            for p in await live_processes(store.pool)
            for r in p.runtimes
        ]  # fmt: skip
        return sorted(found, key=lambda r: (r.app, not r.active, r.process))

    runtimes = on_log(settings, run, connections=1)
    if args.json:
        sys.stdout.write(_encode(runtimes).decode() + "\n")
        return 0
    if not runtimes:
        print("no runtime serving (none seen in the last 30 s)")
        return 0
    app = None
    for r in runtimes:
        if r.app != app:
            app = r.app
            print(f"app {app}")
        state = "active " if r.active else "standby"
        owns = f", partitions {ranges(set(r.partitions))}" if r.partitions else ""
        print(
            f"  {state} {r.host} pid {r.pid}: {r.turns_per_second:g} turns/s,"
            f" {r.in_flight} in flight, {r.turns:,} turns since it started{owns}"
        )
    return 0
