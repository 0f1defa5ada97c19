"""Session load time: snapshot + tail against full replay, at 100 / 1,000 / 10,000 events.

python -m bench.load [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from bench.common import machine, scratch_database, server_url, table
from turnlog.contracts.events import ChannelRef, UserRef
from turnlog.domain.session import Session
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.replay import state_as_of
from turnlog.services.app.sessions.repository import SessionRepository
from turnlog.services.bootstrap import aio

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def build(repo: SessionRepository, events: int) -> Session:
    """A session of ``events`` events: turns of message, reply, data key, completion."""
    session = Session.start(uuid4(), app="bench", user=UserRef(id="u"), channel=ChannelRef(), at=T0)
    i = 0
    while session.version + len(session.pending_events) + 4 <= events:
        at = T0 + timedelta(seconds=i)
        session.receive_message(message_id=f"{session.id.hex[:8]}-m{i}", text=f"message {i}", at=at)
        session.reply(f"reply {i}", at=at)
        session.set_data("counter", i, at=at)
        session.complete_turn(outcome="ok", duration_ms=1, at=at)
        i += 1
        if len(session.pending_events) >= 400:
            await repo.save(session)
    while session.version + len(session.pending_events) < events:
        session.notify("pad", at=T0)
    await repo.save(session)
    return session


async def timed(repo: SessionRepository, session: Session, snapshot: bool, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        loaded = await repo.load(session.id, use_snapshot=snapshot)
        samples.append(time.perf_counter() - started)
        assert loaded.version == session.version
    return statistics.median(samples) * 1000


async def timed_state(store: EventStore, session: Session, repeat: int, kept: bool) -> float:
    """``turnlog replay``'s work: the full history, data and blocks as of the last
    version, folded from every event (``kept`` False: no kept state to start from) or
    from the state a previous replay kept."""
    samples = []
    for _ in range(repeat):
        if not kept:
            await store.pool.execute("DELETE FROM turnlog_state_snapshots")
        started = time.perf_counter()
        state = await state_as_of(store, session.id)
        samples.append(time.perf_counter() - started)
        assert state.version == session.version
    return statistics.median(samples) * 1000


async def main(repeat: int) -> None:
    rows = []
    with server_url() as url:
        async with scratch_database(url) as db:
            store = await EventStore.connect(db)
            repo = SessionRepository(store, snapshot_every=200)
            for events in (100, 1_000, 10_000):
                session = await build(repo, events)
                with_snapshot = await timed(repo, session, True, repeat)
                replay = await timed(repo, session, False, repeat)
                state = await timed_state(store, session, repeat, kept=False)
                await state_as_of(store, session.id)  # keeps its state (from 1,000 events)
                kept = await timed_state(store, session, repeat, kept=True)
                rows.append(
                    [
                        f"{events:,}",
                        f"{with_snapshot:.1f}",
                        f"{replay:.1f}",
                        f"{state:.1f}",
                        f"{kept:.1f}",
                    ]
                )
                print(
                    f"  {events:,} events: snapshot + tail {with_snapshot:.1f} ms, "
                    f"full replay {replay:.1f} ms, replay state {state:.1f} ms "
                    f"({kept:.1f} ms from a kept state)",
                    flush=True,
                )
            await store.close()
    print()
    print(f"session load time (median of {repeat}) — {machine()}")
    print(
        table(
            [
                "events",
                "snapshot + tail (ms)",
                "full replay (ms)",
                "replay state, every event (ms)",
                "replay state, kept (ms)",
            ],
            rows,
        )
    )
    print("target: replay state of a 10,000-event session < 200 ms (stretch < 50 ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    aio.run(main(parser.parse_args().repeat))
