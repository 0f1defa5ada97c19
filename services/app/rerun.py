"""``turnlog replay SESSION --rerun APP.py``: every turn's handler run again on what was
recorded, with nothing written and nothing called outside, and compared with the record.

Each turn starts from the session as recorded just before its message. The handler gets
the recorded message; ``session.effect``, ``now()``, ``uuid()`` and ``stream_reply_from``
hand back the recorded results in order instead of calling anything. The events the
re-run produces are collected (not appended) and compared with the recorded ones, field
by field, leaving out what a re-run cannot repeat (times and durations). While handlers
run, opening a connection, resolving a name or starting a process is refused: a handler
that reaches the outside without ``session.effect`` is reported as non-deterministic.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from turnlog.contracts import events as wire
from turnlog.contracts.query import RerunDivergence, RerunReport
from turnlog.domain.session import Session as SessionAggregate
from turnlog.services.app import mapping
from turnlog.services.app.context import Runtime
from turnlog.services.app.log.codec import EventCodec
from turnlog.services.app.log.errors import StoreError
from turnlog.services.app.log.records import RecordedEvent
from turnlog.services.app.ports import Files
from turnlog.services.app.rerun_report import divergence, render_report
from turnlog.services.app.rerun_sandbox import Collector, Recorded, Stopped, Unrecorded, sealed
from turnlog.services.app.sessions.live import LiveSession
from turnlog.services.app.sessions.outbound import NoDelivery
from turnlog.services.app.sessions.turn import Inbound, Slot, recorded_inbound, run_turn
from turnlog.services.app.spec import AppSpec as App

# The sandbox and the report are defined in rerun_sandbox and rerun_report.
__all__ = ["Stopped", "render_report", "rerun_session"]

_TURN_ENDS = (wire.TurnCompleted.TYPE, wire.TurnInterrupted.TYPE)


async def rerun_session(
    records: Sequence[RecordedEvent],
    app: App,
    progress: Callable[[int, int | None], None] | None = None,
    documents: Sequence[RecordedEvent] = (),
    files: Files | None = None,
) -> RerunReport:
    """Re-run every completed turn of the session whose events are ``records`` (in
    version order, payloads readable) with ``app``'s message handler; stop at the first
    difference. ``documents`` are the collection writes its turns made (by correlation):
    a re-run that makes none where the record has some has diverged. ``files``: the file
    store the turns' files are fetched from again."""
    if not records:
        raise StoreError("no events to re-run")
    handler = app.message_handler
    if handler is None:
        raise StoreError(f"app {app.name!r} has no message handler to re-run")
    session_id = records[0].stream_id
    turns = _turns(records)
    state: SessionAggregate | None = None
    folded = 0
    done = skipped = 0
    for number, (start, end) in enumerate(turns, 1):
        for record in records[folded:start]:
            state = mapping.to_domain_event(record, UUID(session_id)).mutate(state)
        folded = start
        assert state is not None  # a session's first event is session.started
        if state.app != app.name:
            raise StoreError(
                f"session {session_id} is a session of app {state.app!r}, not {app.name!r}"
            )
        if end is None or records[end].type != wire.TurnCompleted.TYPE:
            skipped += 1  # cut off by a crash (or still open): nothing complete to compare
        else:
            divergence = await _rerun_turn(
                app, handler, copy.deepcopy(state), records[start : end + 1], documents,
                Runtime(app.name, files=files),
            )  # fmt: skip
            done += 1
            if divergence is not None:
                result, found = divergence
                found = msgspec.structs.replace(found, turn=number)
                return _report(session_id, app, turns, done, skipped, result, found)
        if progress is not None:
            progress(number, len(turns))
    return _report(session_id, app, turns, done, skipped, "identical", None)


def _report(
    session_id: str,
    app: App,
    turns: list[tuple[int, int | None]],
    done: int,
    skipped: int,
    result: str,
    divergence: RerunDivergence | None,
) -> RerunReport:
    return RerunReport(
        session_id=session_id,
        app=app.name,
        turns=len(turns),
        rerun=done,
        skipped=skipped,
        result=result,
        divergence=divergence,
    )


def _turns(records: Sequence[RecordedEvent]) -> list[tuple[int, int | None]]:
    """(index of message_received, index of the event that ended the turn or None)."""
    turns: list[tuple[int, int | None]] = []
    for i, record in enumerate(records):
        if record.type == wire.MessageReceived.TYPE:
            turns.append((i, None))
        elif record.type in _TURN_ENDS and turns and turns[-1][1] is None:
            turns[-1] = (turns[-1][0], i)
    return turns


async def _rerun_turn(
    app: App,
    handler: Callable[..., Any],
    state: SessionAggregate,
    recorded: Sequence[RecordedEvent],
    documents: Sequence[RecordedEvent],
    runtime: Runtime,
) -> tuple[str, RerunDivergence] | None:
    codec = mapping.session_codec()
    # A resumed turn is one run of its handler as far as its outcome goes: what its
    # attempts recorded, in order, is what one run would have recorded.
    recorded = [r for r in recorded if r.type != wire.TurnResumed.TYPE]
    message = codec.decode(recorded[0].type, recorded[0].schema_version, recorded[0].payload)
    assert isinstance(message, wire.MessageReceived)
    collector = Collector()
    replaying = Recorded(_effects(codec, recorded), _prompts(codec, recorded))
    live = LiveSession(state, collector, NoDelivery(), replaying=replaying)
    session = app.facades.session(live, copy.deepcopy(state.data), {}, runtime)
    session.integrations = Unrecorded(replaying)
    slot = Slot(live, session)
    inbound = recorded_inbound(message, state).with_files(runtime.files)
    outside: list[str] = []
    stopped = await _handle(app.name, handler, slot, inbound, recorded[0].recorded_at, outside)
    await live.settle()  # nothing is written: the collector keeps the events
    return divergence(recorded, collector.events, documents, inbound.message_id, outside, stopped)


def _effects(codec: EventCodec, recorded: Sequence[RecordedEvent]) -> list[tuple[str, Any]]:
    """(name, result) of the turn's recorded effects, in order."""
    return [
        (effect.name, effect.result)
        for effect in (
            codec.decode(r.type, r.schema_version, r.payload)
            for r in recorded
            if r.type == wire.EffectRecorded.TYPE
        )
        if isinstance(effect, wire.EffectRecorded)
    ]


async def _handle(
    app_name: str,
    handler: Callable[..., Any],
    slot: Slot,
    inbound: Inbound,
    received_at: datetime,
    outside: list[str],
) -> Stopped | None:
    """Run the turn with the outside sealed off (noting in ``outside`` what it tried):
    what stopped it early, if anything did."""
    with sealed(outside):
        try:
            await run_turn(app_name, handler, slot, inbound, received_at=received_at)
        except Stopped as e:
            return e
        except (KeyboardInterrupt, asyncio.CancelledError):
            raise
        except BaseException as e:
            return Stopped("diverged", f"the handler raised {type(e).__name__}: {e}")
    return None


def _prompts(
    codec: EventCodec, recorded: Sequence[RecordedEvent]
) -> list[tuple[str, str, str, Any]]:
    """(prompt id, kind, "received" or "timed_out", file) of the turn's prompts."""
    found: dict[str, list[Any]] = {}
    for r in recorded:
        if not r.type.startswith("session.prompt"):
            continue
        payload = codec.decode(r.type, r.schema_version, r.payload)
        if isinstance(payload, wire.Prompted):
            found[payload.prompt_id] = [payload.prompt_id, payload.kind, "cut off", None]
        elif isinstance(payload, wire.PromptReceived) and payload.prompt_id in found:
            found[payload.prompt_id][2:] = ["received", payload.file]
        elif isinstance(payload, wire.PromptTimedOut) and payload.prompt_id in found:
            found[payload.prompt_id][2] = "timed_out"
    return [(p[0], p[1], p[2], p[3]) for p in found.values()]
