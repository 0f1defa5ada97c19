"""Append throughput: turnlog's append path against raw asyncpg INSERTs of the same rows.

    python -m bench.append [--seconds 2] [--repeat 3]

turnlog's figure includes payload encoding, the hash chain and the version check; the
raw figure is one INSERT ... SELECT FROM unnest(...) of the same rows into a table of the
same shape, with precomputed bytes, in the same one-statement transaction shape.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench.common import machine, scratch_database, server_url, table
from turnlog.contracts.events import ReplySent
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.app.log.records import NewEvent
from turnlog.services.app.mapping import session_codec
from turnlog.services.bootstrap import aio

_runs = itertools.count()

RAW_INSERT = """
INSERT INTO raw_events (stream_id, version, type, schema_version, payload, recorded_at,
                        correlation_id, causation_id, actor, prev_hash, hash)
SELECT $1, $2 + n, t, sv, p, r, c, ca, a, ph, h
  FROM unnest($3::text[], $4::smallint[], $5::bytea[], $6::timestamptz[], $7::text[],
              $8::text[], $9::text[], $10::bytea[], $11::bytea[])
       WITH ORDINALITY AS u(t, sv, p, r, c, ca, a, ph, h, n)
"""


async def run_turnlog(store: EventStore, writers: int, size: int, seconds: float) -> int:
    codec = session_codec()
    deadline = time.perf_counter() + seconds

    async def writer(w: int) -> int:
        stream, version, done = f"bench-{next(_runs)}", 0, 0
        while time.perf_counter() < deadline:
            batch = [
                NewEvent(
                    type=ReplySent.TYPE,
                    schema_version=1,
                    payload=codec.encode(ReplySent(text=f"reply {version + i}")),
                    recorded_at=datetime.now(UTC),
                    correlation_id="m",
                    actor="app",
                )
                for i in range(size)
            ]
            await store.append(stream, version, batch)
            version += size
            done += size
        return done

    return sum(await asyncio.gather(*(writer(w) for w in range(writers))))


async def run_raw(pool: asyncpg.Pool, writers: int, size: int, seconds: float) -> int:
    codec = session_codec()
    deadline = time.perf_counter() + seconds
    digest = bytes(32)

    async def writer(w: int) -> int:
        stream, version, done = f"raw-{next(_runs)}", 0, 0
        payloads = [codec.encode(ReplySent(text=f"reply {i}")) for i in range(size)]
        while time.perf_counter() < deadline:
            now = datetime.now(UTC)
            columns: list[Any] = [
                [ReplySent.TYPE] * size,
                [1] * size,
                payloads,
                [now] * size,
                ["m"] * size,
                [None] * size,
                ["app"] * size,
                [digest] * size,
                [digest] * size,
            ]
            await pool.execute(RAW_INSERT, stream, version, *columns)
            version += size
            done += size
        return done

    return sum(await asyncio.gather(*(writer(w) for w in range(writers))))


async def main(seconds: float, repeat: int) -> None:
    with server_url() as url:
        async with scratch_database(url) as db:
            store = await EventStore.connect(db, min_size=10, max_size=10)
            await store.pool.execute(
                "CREATE TABLE raw_events (LIKE turnlog_events INCLUDING DEFAULTS"
                " INCLUDING CONSTRAINTS INCLUDING INDEXES)"
            )
            rows = []
            for writers in (1, 8):
                for size in (1, 5):
                    await run_turnlog(store, writers, size, 0.3)  # warm up
                    ours, raw = [], []
                    for _ in range(repeat):  # alternate, so drift hits both alike
                        ours.append(await run_turnlog(store, writers, size, seconds) / seconds)
                        raw.append(await run_raw(store.pool, writers, size, seconds) / seconds)
                    o, r = statistics.median(ours), statistics.median(raw)
                    rows.append([str(writers), str(size), f"{o:,.0f}", f"{r:,.0f}", f"{o / r:.0%}"])
                    print(
                        f"  {writers} writer(s) x {size}-event appends: "
                        f"turnlog {o:,.0f} ev/s, raw {r:,.0f} ev/s",
                        flush=True,
                    )
            await store.close()
    print()
    print(
        f"append throughput, median of {repeat} alternating runs of {seconds:.0f} s — {machine()}"
    )
    print(
        table(
            [
                "writers",
                "events/append",
                "turnlog events/s",
                "raw INSERT events/s",
                "turnlog / raw",
            ],
            rows,
        )
    )
    print("target: turnlog >= 60% of raw at 8 writers x 5 events")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    aio.run(main(args.seconds, args.repeat))
