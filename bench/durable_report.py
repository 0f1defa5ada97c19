"""The tables and notes of bench/durable.py (turnlog against DBOS)."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from bench.common import table

if TYPE_CHECKING:
    from bench.durable import Options, Row

LABELS = {"turnlog": "turnlog, in process", "dbos": "DBOS workflow"}
NOTES = {
    "turnlog": (
        "SessionHost on the EventStore (Wiring.postgres), sessions held in memory; the "
        "handler replies and sets session.data['turns']. Per turn the message is committed "
        "before the handler runs (1 row), then the reply, the data key and the outcome "
        "(3 rows, usually one commit), hash-chained and version-checked; concurrent sessions "
        "share commits (group commit). Pool: sessions + 2 connections, at most 40. "
        "Recovery: a fresh process connects (a pool of 2) and hands the runtime the cut-off "
        "message again, as JetStream redelivers an unacknowledged message to `turnlog run`; "
        "loading the session finds the turn open. Under `turnlog run` the message comes back "
        "once TURNLOG_ACK_WAIT (30 s by default) has passed since the dead process last "
        "marked it in progress; here it is handed back at once, as DBOS is timed from its "
        "launch, not from the crash."
    ),
    "dbos": (
        "an async workflow of three async steps, called in the session's own task under "
        "SetWorkflowID(message id); each step is an insert on the app's own asyncpg pool "
        "(sessions + 2 connections, at most 40, no reset query, as turnlog's). DBOS keeps "
        "its system tables in the `dbos` schema of the same database, on its own "
        "SQLAlchemy/psycopg pool (its default of 20, or the app's size when larger) that it "
        "reaches from worker threads. Per turn it records the workflow's start (status and "
        "inputs); for each step it reads whether the step's output is recorded, runs the "
        "step (its own transaction) and records the output under a lock on the workflow's "
        "row; then it records the result. Recovery: DBOS.launch() in a fresh process finds "
        "the workflow PENDING for its executor id and application version (a hash of the "
        "workflows' source), puts it back on DBOS's internal queue, whose worker thread "
        "polls about once a second, and runs it again: a step whose output is recorded "
        "returns that output without running."
    ),
}


def _cells(r: Row | None) -> list[str]:
    if r is None:
        return ["—"] * 4
    return [f"{r.turns_per_s:,.0f}", f"{r.p50_ms:,.1f}", f"{r.p99_ms:,.1f}", f"{r.tx_per_turn:.1f}"]


def throughput_table(rows: list[Row]) -> str:
    by = {(r.system, r.sessions): r for r in rows}
    lines = []
    for sessions in sorted({r.sessions for r in rows}):
        t, d = by.get(("turnlog", sessions)), by.get(("dbos", sessions))
        cells = [str(sessions)]
        for r in (t, d):
            cells += _cells(r)
        cells.append(f"{t.turns_per_s / d.turns_per_s:.1f}×" if t and d else "—")
        lines.append(cells)
    headers = ["sessions"]
    for system in ("turnlog", "DBOS"):
        headers += [f"{system} turns/s", "p50 ms", "p99 ms", "transactions a turn"]
    return table([*headers, "turnlog ÷ DBOS"], lines)


def describe(system: str, run: dict[str, Any]) -> str:
    """What the record shows once the cut-off turn is recovered."""
    if system == "turnlog":
        if run["resumed"]:
            return (
                f"resumed and completed: {run['replies']} reply on record, "
                f"turn counter {run['counter']}"
            )
        shown = " → ".join(t.removeprefix("session.") for t in run["events"])
        return f"not resumed: the log shows {shown}; turn counter {run['counter']}"
    ran = "once" if run["replies"] == 1 else f"{run['replies']} times"
    return (
        f"{run['status']}: the reply step ran {ran} ({run['steps']} step outputs, "
        f"{run['messages']} message row, {run['replies']} reply row), turn counter {run['counter']}"
    )


def recovery_line(system: str, run: dict[str, Any]) -> str:
    return (
        f"{run['ended_ms']:,.0f} ms to the turn's end on record (ready after "
        f"{run['ready_ms']:,.0f} ms); {describe(system, run)}"
    )


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def recovery_table(runs: list[dict[str, Any]]) -> str:
    lines = []
    for system, label in LABELS.items():
        mine = [r for r in runs if r["system"] == system]
        if not mine:
            continue
        shown = list(dict.fromkeys(describe(system, r) for r in mine))
        lines.append(
            [
                label,
                str(len(mine)),
                _spread([r["ready_ms"] for r in mine]),
                _spread([r["ended_ms"] for r in mine]),
                "; ".join(shown),
            ]
        )
    headers = ["system", "runs", "connected / launched ms", "turn ended on record ms"]
    return table([*headers, "what the record shows"], lines)


def _dequeued(runs: list[dict[str, Any]]) -> list[str]:
    waits = [r["dequeued_ms"] for r in runs if r["system"] == "dbos"]
    if not waits:
        return []
    return [
        "",
        f"Of DBOS's time, the recovered workflow waited {_spread(waits)} ms on the internal "
        "queue after DBOS.launch() returned, until its worker thread dequeued it "
        "(workflow_status.started_at_epoch_ms against the server's clock at launch).",
    ]


def render(found: dict[str, Any], options: Options, machine: str, when: str) -> str:
    runs = found["recovery"]
    versions = ", ".join(f"{k} {v}" for k, v in found["versions"].items())
    return "\n".join(
        [
            f"# turnlog against DBOS — {when}",
            "",
            f"Machine: {machine}, load average {found['load_average'][0]:.2f} at the start; "
            f"PostgreSQL {found['postgres']} (one server, a scratch database per side). "
            f"{options.seconds:g} s per row, sessions talking back to back, each row in a "
            "process of its own after a warm-up, the sides alternating; each row is the "
            f"round of median turns/s of {options.rounds}. A turn is one user "
            "message, one reply and one data key (the session's turn counter), durable "
            "before the session's next turn. Transactions a turn: the database's commits "
            "over the row's process (reads outside a transaction count), by its turns.",
            "",
            throughput_table(found["throughput"]),
            "",
            f"Recovering a cut-off turn ({options.recoveries} per side, alternating): a "
            "process runs a session's second turn and is killed with SIGKILL once that "
            "turn's reply is on record; a fresh process recovers it. Times from connecting "
            "(turnlog) or launching DBOS until the turn has ended on record (completed, or "
            "recorded as interrupted: the last column says which); median (min–max).",
            "",
            recovery_table(runs),
            *_dequeued(runs),
            "",
            "What each side does:",
            "",
            *(f"- {label}: {NOTES[system]}" for system, label in LABELS.items()),
            "",
            f"Versions: {versions}",
        ]
    )
