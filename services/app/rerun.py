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
import os
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TextIO
from uuid import UUID

import msgspec

from turnlog.contracts import events as wire
from turnlog.contracts.query import RerunDivergence, RerunReport
from turnlog.domain.session import Session as SessionAggregate
from turnlog.services.app import mapping
from turnlog.services.app.context import Runtime
from turnlog.services.app.log.codec import EventCodec
from turnlog.services.app.log.errors import StoreError
from turnlog.services.app.log.records import NewEvent, RecordedEvent
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.ports import Files
from turnlog.services.app.sessions.live import LiveSession
from turnlog.services.app.sessions.outbound import NoDelivery
from turnlog.services.app.sessions.turn import Inbound, Slot, run_turn
from turnlog.services.app.spec import AppSpec as App
from turnlog.services.app.values import Attachment, SessionChannel, UserInfo

_decode = msgspec.json.decode
_TURN_ENDS = (wire.TurnCompleted.TYPE, wire.TurnInterrupted.TYPE)
_UNREPEATABLE = {wire.TurnCompleted.TYPE: ("duration_ms",)}


class Stopped(BaseException):
    """Ends a re-run turn early. A BaseException, so a handler's ``except Exception``
    cannot swallow it."""

    def __init__(self, result: str, reason: str, actual: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.result, self.reason, self.actual = result, reason, actual


class _Recorded:
    """The turn's recorded effects and prompts, handed out in order (``RecordedEffects``)."""

    def __init__(
        self,
        effects: Sequence[tuple[str, Any]],
        prompts: Sequence[tuple[str, str, str, Any]] = (),
    ) -> None:
        self._queue = deque(effects)
        self._prompts = deque(prompts)

    def prompt(self, kind: str) -> tuple[str, str, Any]:
        if not self._prompts:
            raise Stopped("diverged", f"a {kind} prompt, where the record has none")
        prompt_id, recorded_kind, outcome, answer = self._prompts.popleft()
        if recorded_kind != kind:
            raise Stopped("diverged", f"a {kind} prompt where a {recorded_kind} prompt was")
        return prompt_id, outcome, answer

    def take(self, name: str) -> Any:
        actual = {"type": wire.EffectRecorded.TYPE, "name": name, "result": None}
        if not self._queue:
            raise Stopped("diverged", f"effect {name!r} was not recorded in this turn", actual)
        recorded, result = self._queue.popleft()
        if recorded != name:
            raise Stopped(
                "diverged", f"effect {name!r} where effect {recorded!r} was recorded", actual
            )
        return result

    def refuse(self, what: str) -> BaseException:
        return Stopped("not_rerunnable", f"{what} is not re-run")


class _Unrecorded(Mapping[str, Any]):
    """``session.integrations`` in a re-run: credentials are never on record, so using
    them makes the turn not re-runnable."""

    def __init__(self, replaying: _Recorded) -> None:
        self._replaying = replaying

    def _refuse(self) -> BaseException:
        return self._replaying.refuse("session.integrations")

    def __getitem__(self, key: str) -> Any:
        raise self._refuse()

    def __iter__(self) -> Iterator[str]:
        raise self._refuse()

    def __len__(self) -> int:
        raise self._refuse()

    def __contains__(self, key: object) -> bool:
        raise self._refuse()


class _Collector:
    """Stands in for the repository: keeps the events instead of appending them."""

    def __init__(self) -> None:
        self.events: list[NewEvent] = []

    async def save(self, session: SessionAggregate, meta: Metadata) -> None:
        self.events += [mapping.to_new_event(e, meta) for e in session.collect_events()]


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
    message = codec.decode(recorded[0].type, recorded[0].schema_version, recorded[0].payload)
    assert isinstance(message, wire.MessageReceived)
    effects = [
        (effect.name, effect.result)
        for effect in (
            codec.decode(r.type, r.schema_version, r.payload)
            for r in recorded
            if r.type == wire.EffectRecorded.TYPE
        )
        if isinstance(effect, wire.EffectRecorded)
    ]
    collector = _Collector()
    replaying = _Recorded(effects, _prompts(codec, recorded))
    live = LiveSession(state, collector, NoDelivery(), replaying=replaying)
    session = app.facades.session(live, copy.deepcopy(state.data), {}, runtime)
    session.integrations = _Unrecorded(replaying)
    slot = Slot(live, session)
    inbound = Inbound(
        message_id=message.message_id,
        text=message.text,
        user=UserInfo(id=state.user.id, email=state.user.email, org_id=state.user.org_id),
        channel=SessionChannel(type=message.channel_type, name=state.channel.name),
        session_id=state.id,
        attachments=tuple(
            Attachment(name=a.name, content_type=a.content_type, url=a.url, size=a.size)
            for a in message.attachments
        ),
        sent_at=message.sent_at,
    ).with_files(runtime.files)
    outside: list[str] = []
    stopped: Stopped | None = None
    with _sealed(outside):
        try:
            await run_turn(app.name, handler, slot, inbound, received_at=recorded[0].recorded_at)
        except Stopped as e:
            stopped = e
        except (KeyboardInterrupt, asyncio.CancelledError):
            raise
        except BaseException as e:
            stopped = Stopped("diverged", f"the handler raised {type(e).__name__}: {e}")
    await live.settle()  # nothing is written: the collector keeps the events

    expected = [_comparable(r.type, r.payload) for r in recorded]
    actual = [_comparable(e.type, e.payload) for e in collector.events]

    def at(index: int, result: str, reason: str, got: dict[str, Any] | None) -> tuple[str, Any]:
        return result, RerunDivergence(
            turn=0,
            message_id=inbound.message_id,
            event_index=index,
            version=recorded[index].version if index < len(recorded) else None,
            expected=expected[index] if index < len(expected) else None,
            actual=got,
            reason=reason,
        )

    if outside:
        return at(
            len(actual),
            "non_deterministic",
            f"the handler reached the outside without session.effect: {outside[0]}",
            None,
        )
    if stopped is not None:
        return at(len(actual), stopped.result, stopped.reason, stopped.actual)
    written = [d for d in documents if d.correlation_id == inbound.message_id]
    if written:  # a re-run that used session.db has stopped above: this one did not
        return at(
            len(actual),
            "diverged",
            f"the record holds {len(written)} collection write(s) here ({written[0].type}"
            f" in {written[0].stream_id}) that the re-run did not make",
            None,
        )
    for index, (want, got) in enumerate(zip(expected, actual, strict=False)):
        if want != got:
            return at(index, "diverged", "a different event", got)
    if len(actual) != len(expected):
        index = min(len(actual), len(expected))
        extra = actual[index] if index < len(actual) else None
        reason = "an event more than recorded" if extra else "an event fewer than recorded"
        return at(index, "diverged", reason, extra)
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


def _comparable(type_name: str, payload: bytes) -> dict[str, Any]:
    body: dict[str, Any] = _decode(payload)
    for name in _UNREPEATABLE.get(type_name, ()):
        body.pop(name, None)
    return {"type": type_name, **body}


@contextmanager
def _sealed(seen: list[str]) -> Iterator[None]:
    """Refuse connections, name lookups and new processes (noting what was tried)."""

    def refuse(what: str) -> Stopped:
        seen.append(what)
        return Stopped("non_deterministic", what)

    def connect(sock: socket.socket, address: Any, *args: Any) -> Any:
        raise refuse(f"connect to {_where(address)}")

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> Any:
        raise refuse(f"connect to {_where(address)}")

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        raise refuse(f"look up {host}:{port}")

    def popen(args: Any, *rest: Any, **kwargs: Any) -> Any:
        raise refuse(f"start a process ({args!r})")

    def system(command: Any) -> Any:
        raise refuse(f"start a process ({command!r})")

    patches: list[tuple[Any, str, Any]] = [
        (socket.socket, "connect", connect),
        (socket.socket, "connect_ex", connect),
        (socket, "create_connection", create_connection),
        (socket, "getaddrinfo", getaddrinfo),
        (subprocess, "Popen", popen),
        (os, "system", system),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    try:
        for owner, name, replacement in patches:
            setattr(owner, name, replacement)
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def _where(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


def render_report(report: RerunReport, out: TextIO = sys.stdout, *, as_json: bool = False) -> None:
    if as_json:
        out.write(msgspec.json.encode(report).decode() + "\n")
        return
    skipped = f", {report.skipped} cut off and skipped" if report.skipped else ""
    head = f"session {report.session_id} (app {report.app})"
    found = report.divergence
    if found is None:
        out.write(f"{head}: {report.rerun} of {report.turns} turns re-run{skipped}: identical\n")
        return
    version = f" (version {found.version})" if found.version is not None else ""
    verdict = report.result.replace("_", "-")
    out.write(
        f"{head}: {verdict} at turn {found.turn} (message {found.message_id}),"
        f" event {found.event_index}{version}: {found.reason}\n"
    )
    out.write(f"  expected: {_event_line(found.expected)}\n")
    out.write(f"  actual:   {_event_line(found.actual)}\n")


def _event_line(event: dict[str, Any] | None) -> str:
    if event is None:
        return "(nothing)"
    body = {k: v for k, v in event.items() if k != "type"}
    return f"{event['type']} {msgspec.json.encode(body).decode()}"
