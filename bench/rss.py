"""Peak memory of a runtime holding many live sessions.

    python -m bench.rss [--sessions 10000] [--json]

A SessionHost handles one turn in each of N new sessions (100 at a time) and keeps them
all live; the figures are this process's resident set: before the sessions (connected,
warmed up), after them, and its peak (VmHWM, or ``ru_maxrss``). Run it in a process of its own so
that nothing else is counted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import sys
import uuid

import psutil

import turnlog
from bench.common import machine, scratch_database, server_url
from bench.turns import app
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.app.sessions.turn import Inbound
from turnlog.services.bootstrap import aio
from turnlog.services.bootstrap.wiring import Wiring

CONCURRENCY = 100


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


def _peak() -> int:
    """The high-water mark of this process's resident set. On Linux VmHWM, which starts
    afresh at exec (``ru_maxrss`` keeps the parent's figure from before the exec)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB else


async def measure(sessions: int) -> dict[str, float]:
    user = turnlog.UserInfo(id="bench")
    with server_url() as url:
        async with scratch_database(url) as db:
            store = await EventStore.connect(db, min_size=20, max_size=20)
            host = Wiring.postgres(store).host(app, max_live=sessions + CONCURRENCY)

            async def turns(count: int) -> None:
                ids = iter(range(count))

                async def worker() -> None:
                    for n in ids:
                        await host.handle(
                            Inbound(
                                message_id=uuid.uuid4().hex,
                                text=f"hello {n}",
                                user=user,
                                session_id=uuid.uuid4(),
                            )
                        )

                await asyncio.gather(*(worker() for _ in range(min(count, CONCURRENCY))))

            await turns(CONCURRENCY)  # warm up: connections, statement caches, code paths
            gc.collect()
            baseline = _rss()
            await turns(sessions)
            gc.collect()
            after = _rss()
            live = host.live_count()
            await host.stop()
            await store.close()
    assert live == sessions + CONCURRENCY, live
    return {
        "sessions": sessions,
        "baseline_bytes": baseline,
        "after_bytes": after,
        "peak_bytes": _peak(),
        "per_session_bytes": (after - baseline) / sessions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--json", action="store_true", help="one JSON line, for bench.compare")
    args = parser.parse_args()
    figures = aio.run(measure(args.sessions))
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"{args.sessions:,} live sessions — {machine()}\n"
        f"  baseline {figures['baseline_bytes'] / 2**20:.1f} MiB, "
        f"after {figures['after_bytes'] / 2**20:.1f} MiB, "
        f"peak {figures['peak_bytes'] / 2**20:.1f} MiB, "
        f"{figures['per_session_bytes'] / 1024:.1f} KiB per live session"
    )


if __name__ == "__main__":
    main()
