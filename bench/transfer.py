"""Export and import rates over a log of real events.

    python -m bench.transfer [--events 1000000] [--streams 1000]

Fills a scratch database through ``EventStore.append`` (500 events an append, streams
taking turns), exports it to a temporary file, imports that into a second scratch database,
imports it again (every event already there, so all skipped), and exports the second
database to check the round trip is byte-identical. Prints events/s for each step and the
process's peak memory. Target: export >= 50,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import machine, scratch_database, server_url, table
from turnlog.contracts.events import ReplySent
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.transfer import export, import_
from turnlog.services.app.log.records import NewEvent
from turnlog.services.app.mapping import session_codec
from turnlog.services.bootstrap import aio

PER_APPEND = 500
WRITERS = 8


async def fill(store: EventStore, events: int, streams: int) -> None:
    """``events`` events over ``streams`` streams, in appends of PER_APPEND, by WRITERS
    concurrent writers each owning a share of the streams."""
    codec = session_codec()
    appends = events // PER_APPEND

    async def writer(w: int) -> None:
        owned = max(1, streams // WRITERS)
        versions: dict[str, int] = {}
        for k in range(len(range(w, appends, WRITERS))):
            stream = f"session-{w + WRITERS * (k % owned):06d}"
            version = versions.get(stream, 0)
            batch = [
                NewEvent(
                    type=ReplySent.TYPE,
                    schema_version=1,
                    payload=codec.encode(ReplySent(text=f"reply {version + i} — ünïcode ✓")),
                    recorded_at=datetime.now(UTC),
                    correlation_id=f"msg-{w}-{k}",
                    actor="app:bench",
                )
                for i in range(PER_APPEND)
            ]
            await store.append(stream, version, batch)
            versions[stream] = version + PER_APPEND

    await asyncio.gather(*(writer(w) for w in range(WRITERS)))


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


async def timed_export(store: EventStore, path: Path) -> tuple[int, float]:
    start = time.perf_counter()
    with path.open("wb") as out:
        count = await export(store, out)
    return count, time.perf_counter() - start


async def main(events: int, streams: int) -> None:
    rows: list[list[str]] = []
    with server_url() as url, tempfile.TemporaryDirectory() as tmp:
        first, second = Path(tmp) / "first.jsonl", Path(tmp) / "second.jsonl"
        async with scratch_database(url) as source_db, scratch_database(url) as target_db:
            source = await EventStore.connect(source_db, min_size=WRITERS, max_size=WRITERS)
            target = await EventStore.connect(target_db)
            start = time.perf_counter()
            await fill(source, events, streams)
            filled = time.perf_counter() - start
            total = await source.last_position()
            print(f"  filled {total:,} events in {filled:.1f} s", flush=True)

            count, seconds = await timed_export(source, first)
            size = first.stat().st_size
            rows.append(["export", f"{count:,}", f"{seconds:.1f}", f"{count / seconds:,.0f}"])
            print(f"  export: {count / seconds:,.0f} ev/s ({size / 2**20:,.0f} MiB)", flush=True)

            start = time.perf_counter()
            with first.open("rb") as lines:
                report = await import_(target, lines)
            seconds = time.perf_counter() - start
            rate = report.read / seconds
            rows.append(["import", f"{report.inserted:,}", f"{seconds:.1f}", f"{rate:,.0f}"])
            print(f"  import: {rate:,.0f} ev/s", flush=True)

            start = time.perf_counter()
            with first.open("rb") as lines:
                again = await import_(target, lines)
            seconds = time.perf_counter() - start
            assert again.inserted == 0 and again.skipped == report.read
            rate = again.read / seconds
            rows.append(["import again (no-op)", "0", f"{seconds:.1f}", f"{rate:,.0f}"])
            print(f"  import again: {rate:,.0f} ev/s, all skipped", flush=True)

            count, seconds = await timed_export(target, second)
            identical = digest(first) == digest(second)
            print(f"  re-export: {count / seconds:,.0f} ev/s, byte-identical: {identical}")
            await source.close()
            await target.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print()
    print(f"log transfer over {total:,} events in {streams:,} streams — {machine()}")
    print(table(["direction", "events written", "seconds", "events/s"], rows))
    print(f"peak RSS {peak:,.0f} MiB; target: export >= 50,000 events/s")
    if not identical:
        raise SystemExit("re-export differs from the first export")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--streams", type=int, default=1000)
    args = parser.parse_args()
    aio.run(main(args.events, args.streams))
