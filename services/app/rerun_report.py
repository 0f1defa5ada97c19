"""A re-run turn compared with its record, and the re-run's report as printed."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TextIO

import msgspec

from turnlog.contracts import events as wire
from turnlog.contracts.query import RerunDivergence, RerunReport
from turnlog.services.app.log.records import NewEvent, RecordedEvent
from turnlog.services.app.rerun_sandbox import Stopped

_decode = msgspec.json.decode
_UNREPEATABLE = {wire.TurnCompleted.TYPE: ("duration_ms",)}
_Found = tuple[int, str, str, dict[str, Any] | None]
"""Where a re-run diverges: event index, result, reason, and the event it made instead."""


def divergence(
    recorded: Sequence[RecordedEvent],
    events: Sequence[NewEvent],
    documents: Sequence[RecordedEvent],
    message_id: str,
    outside: list[str],
    stopped: Stopped | None,
) -> tuple[str, RerunDivergence] | None:
    """How the re-run of the turn ``recorded`` (which produced ``events``) differs from
    the record: the result and the first difference, or None when there is none."""
    expected = [_comparable(r.type, r.payload) for r in recorded]
    actual = [_comparable(e.type, e.payload) for e in events]
    found = _cut_short(len(actual), documents, message_id, outside, stopped) or _first_difference(
        expected, actual
    )
    if found is None:
        return None
    index, result, reason, got = found
    return result, RerunDivergence(
        turn=0,
        message_id=message_id,
        event_index=index,
        version=recorded[index].version if index < len(recorded) else None,
        expected=expected[index] if index < len(expected) else None,
        actual=got,
        reason=reason,
    )


def _cut_short(
    index: int,
    documents: Sequence[RecordedEvent],
    message_id: str,
    outside: list[str],
    stopped: Stopped | None,
) -> _Found | None:
    """Why the turn diverged after its ``index`` events, if it did before they could be
    compared: it reached the outside, it was stopped, or the record holds collection
    writes it did not make."""
    if outside:
        return (
            index,
            "non_deterministic",
            f"the handler reached the outside without session.effect: {outside[0]}",
            None,
        )
    if stopped is not None:
        return index, stopped.result, stopped.reason, stopped.actual
    written = [d for d in documents if d.correlation_id == message_id]
    if written:  # a re-run that used session.db has stopped above: this one did not
        return (
            index,
            "diverged",
            f"the record holds {len(written)} collection write(s) here ({written[0].type}"
            f" in {written[0].stream_id}) that the re-run did not make",
            None,
        )
    return None


def _first_difference(
    expected: list[dict[str, Any]], actual: list[dict[str, Any]]
) -> _Found | None:
    for index, (want, got) in enumerate(zip(expected, actual, strict=False)):
        if want != got:
            return index, "diverged", "a different event", got
    if len(actual) != len(expected):
        index = min(len(actual), len(expected))
        extra = actual[index] if index < len(actual) else None
        reason = "an event more than recorded" if extra else "an event fewer than recorded"
        return index, "diverged", reason, extra
    return None


def _comparable(type_name: str, payload: bytes) -> dict[str, Any]:
    body: dict[str, Any] = _decode(payload)
    for name in _UNREPEATABLE.get(type_name, ()):
        body.pop(name, None)
    return {"type": type_name, **body}


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
