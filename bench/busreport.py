"""bench.bus's rows: tables, the 16-core prediction, and the runs saved in bench/results."""

from __future__ import annotations

import datetime as dt
import json
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from bench.common import machine, table
from bench.cpu import MACHINE

RESULTS = Path(__file__).with_name("results")
CORES = 16
SERVERS = ("relay", "projector", "PostgreSQL", "NATS")
TARGETS = "targets: >= 2,500 turns/s at 100 sessions with one runtime; completion p50 <= 4 ms at 1"


class Measured(Protocol):
    @property
    def turns(self) -> int: ...
    @property
    def seconds(self) -> float: ...
    @property
    def replies(self) -> list[float]: ...
    @property
    def completions(self) -> list[float]: ...
    @property
    def cpu(self) -> dict[str, float]: ...


@dataclass(frozen=True)
class Row:
    layout: str
    runtimes: int
    sessions: int
    rate: float  # messages a second per session; 0: back to back
    turns: int
    seconds: float
    reply_p50_ms: float
    reply_p99_ms: float
    completion_p50_ms: float
    completion_p99_ms: float
    cpu: dict[str, float]  # label -> CPU seconds over the round

    @property
    def turns_per_s(self) -> float:
        return self.turns / self.seconds

    def ms_per_turn(self, label: str) -> float | None:
        """CPU ms per turn of ``label``'s processes (the runtimes: all of them)."""
        if label == "runtimes":
            spent = [s for k, s in self.cpu.items() if k == "run" or k.startswith("runtime")]
            return sum(spent) / self.turns * 1000 if spent else None
        seconds = self.cpu.get(label)
        return None if seconds is None else seconds / self.turns * 1000


def _quantiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=100)
    return q[49], q[98]


def row(layout: str, runtimes: int, sessions: int, rate: float, measured: Measured) -> Row:
    reply = _quantiles(measured.replies or measured.completions)
    done = _quantiles(measured.completions)
    return Row(
        layout, runtimes, sessions, rate, measured.turns, measured.seconds,
        reply[0], reply[1], done[0], done[1], measured.cpu,
    )  # fmt: skip


def _sessions(r: Row) -> str:
    return f"{r.sessions} at {r.rate:.0f}/s each" if r.rate else str(r.sessions)


def progress(r: Row) -> str:
    runtime = r.ms_per_turn("runtimes")
    cpu = "" if runtime is None else f", runtimes {runtime:.3f} CPU ms/turn"
    return (
        f"{_sessions(r)} sessions: {r.turns_per_s:,.0f} turns/s, completion p50"
        f" {r.completion_p50_ms:.1f} ms, p99 {r.completion_p99_ms:.1f} ms{cpu}"
    )


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _cpu_cells(r: Row) -> list[str]:
    runtimes = sorted(k for k in r.cpu if k == "run" or k.startswith("runtime"))
    cell = _ms(r.ms_per_turn("runtimes"))
    if len(runtimes) > 1:
        cell += " (" + " + ".join(_ms(r.ms_per_turn(k)) for k in runtimes) + ")"
    inside = "in run" if "run" in r.cpu else "—"
    parts = [_ms(r.ms_per_turn(k)) if k in r.cpu else inside for k in ("relay", "projector")]
    return [
        cell,
        *parts,
        *(_ms(r.ms_per_turn(k)) for k in ("NATS", "PostgreSQL", "producers")),
        *_machine_cells(r),
    ]


def _machine_cells(r: Row) -> list[str]:
    """The machine's busy cores over the row, and those not spent in the benchmark's
    processes (other work on the machine, and interrupt time the kernel counts apart)."""
    busy = r.cpu.get(MACHINE)
    if busy is None:
        return ["—", "—"]
    ours = sum(v for k, v in r.cpu.items() if k != MACHINE)
    return [f"{busy / r.seconds:.2f}", f"{max(0.0, busy - ours) / r.seconds:.2f}"]


HEADERS = [
    "layout", "runtimes", "sessions", "turns/s", "reply p50 ms", "p99 ms",
    "completion p50 ms", "p99 ms", "CPU ms/turn: runtimes", "relay", "projector",
    "NATS", "PostgreSQL", "producers", "machine busy, cores", "of which others",
]  # fmt: skip


def rows_table(rows: Sequence[Row]) -> str:
    return table(
        HEADERS,
        [
            [
                r.layout,
                str(r.runtimes),
                _sessions(r),
                f"{r.turns_per_s:,.0f}",
                f"{r.reply_p50_ms:.1f}",
                f"{r.reply_p99_ms:.1f}",
                f"{r.completion_p50_ms:.1f}",
                f"{r.completion_p99_ms:.1f}",
                *_cpu_cells(r),
            ]
            for r in rows
        ],
    )


def prediction(rows: Sequence[Row], cores: int = CORES) -> str:
    """Turns a second one machine of ``cores`` would do, from the CPU per turn of the
    busiest back-to-back row (split layout if there is one, one runtime preferred)."""
    busy = [r for r in rows if not r.rate and r.cpu]
    split = [r for r in busy if r.layout == "split"] or busy
    if not split:
        return ""
    r = max(split, key=lambda r: (r.sessions, -r.runtimes))
    runtime = r.ms_per_turn("runtimes") or 0.0
    cost = {k: r.ms_per_turn(k) or 0.0 for k in SERVERS}
    others = sum(cost.values())
    everything = cores / (runtime + others) * 1000
    caps = {k: 1000 / cost[k] for k in ("relay", "projector") if cost[k]}
    rate = min([everything, *caps.values()])
    spent = ", ".join(f"{k} {cost[k]:.3f}" for k in SERVERS)
    lines = [
        f"{cores}-core prediction from the {r.layout} layout at {r.sessions} sessions,"
        f" {r.runtimes} runtime(s) (CPU ms per turn: runtimes {runtime:.3f}, {spent};"
        " the producers run elsewhere):",
        f"  all on {cores} cores: turns/s ≈ {cores} / ({runtime:.3f} + "
        + " + ".join(f"{cost[k]:.3f}" for k in SERVERS)
        + f") ms = {everything:,.0f}",
    ]
    if caps:
        lines.append(
            "  the relay and the projector are one process each (one core at most): "
            + " and ".join(f"{k} 1 / {cost[k]:.3f} ms = {c:,.0f}" for k, c in caps.items())
        )
    left = cores - rate * others / 1000
    lines.append(
        f"  → ≈ {rate:,.0f} turns/s: the relay, projector, PostgreSQL and NATS take"
        f" {rate:,.0f} × {others:.3f} ms = {rate * others / 1000:.1f} cores, leaving"
        f" {left:.1f} for runtimes, which need {rate:,.0f} × {runtime:.3f} ms ="
        f" {rate * runtime / 1000:.1f}"
    )
    if r.layout == "run":
        lines.append("  (run layout: the relay and the projector are inside the run process)")
    return "\n".join(lines)


def render_run(rows: Sequence[Row], seconds: float, load: Sequence[float]) -> str:
    return "\n".join(
        [
            f"producer round trips through NATS, {seconds:.0f} s per row — {machine()},"
            f" load average {load[0]:.2f} at the start",
            rows_table(rows),
            TARGETS,
            "(rows 'N at R/s each' are paced: each session sends R messages a second)",
            "",
            prediction(rows),
        ]
    )


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def save(label: str, rows: Sequence[Row], options: dict[str, Any], load: Sequence[float]) -> Path:
    """Add this run to ``bus-LABEL.json`` (its runs, oldest first)."""
    path = RESULTS / f"bus-{label}.json"
    data: dict[str, Any] = {"label": label, "runs": []}
    if path.exists():
        data = json.loads(path.read_text())
    data["runs"].append(
        {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": _commit(),
            "machine": machine(),
            "load_average_at_start": list(load),
            "options": {k: v for k, v in options.items() if k in ("seconds", "sessions")},
            "rows": [asdict(r) for r in rows],
        }
    )
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def _load(label: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = json.loads((RESULTS / f"bus-{label}.json").read_text())["runs"]
    return runs


def median_rows(runs: Sequence[dict[str, Any]]) -> list[Row]:
    """One row per (layout, runtimes, sessions, rate): the median of each figure."""
    groups: dict[tuple[str, int, int, float], list[Row]] = {}
    for run in runs:
        for data in run["rows"]:
            r = Row(**data)
            groups.setdefault((r.layout, r.runtimes, r.sessions, r.rate), []).append(r)
    out = []
    for (layout, runtimes, sessions, rate), rs in groups.items():
        labels = set.intersection(*(set(r.cpu) for r in rs))
        turns = round(statistics.median(r.turns_per_s for r in rs) * 10)
        out.append(
            Row(
                layout,
                runtimes,
                sessions,
                rate,
                turns,
                10.0,
                statistics.median(r.reply_p50_ms for r in rs),
                statistics.median(r.reply_p99_ms for r in rs),
                statistics.median(r.completion_p50_ms for r in rs),
                statistics.median(r.completion_p99_ms for r in rs),
                {k: statistics.median(r.cpu[k] / r.turns for r in rs) * turns for k in labels},
            )
        )
    return out


def write_report(labels: Sequence[str]) -> str:
    """``bench/results/bus.md`` from the runs saved under ``labels``: medians per label,
    every run, and the 16-core prediction of each label's medians."""
    runs = {label: _load(label) for label in labels}
    first = next(iter(runs.values()))[0]
    parts = [
        f"# turnlog through NATS: {', '.join(labels)} — {first['date']}",
        "",
        f"Machine: {first['machine']}. `python -m bench.bus`, {first['options']['seconds']:.0f} s"
        " per row; runs of the labels alternated on the same machine, each with its own"
        " embedded PostgreSQL and NATS. Medians over each label's runs, then every run.",
        "CPU ms/turn: user + system time of each process over the row's window, divided by"
        " its turns (producers: the benchmark process itself). Machine busy: cores in use"
        " over the window, of which others: not by the benchmark's processes (other work on"
        " this shared machine, and interrupt time the kernel counts apart).",
        "",
    ]
    for label, label_runs in runs.items():
        commits = sorted({str(r["commit"]) for r in label_runs})
        parts += [
            f"## {label}: commit {', '.join(commits)}, median of {len(label_runs)} run(s)",
            "",
            rows_table(median_rows(label_runs)),
            "",
            prediction(median_rows(label_runs)),
            "",
        ]
    for label, label_runs in runs.items():
        for i, run in enumerate(label_runs, start=1):
            load = run["load_average_at_start"][0]
            parts += [
                f"### {label}, run {i}: {run['date']}, load average {load:.2f} at the start",
                "",
                rows_table([Row(**r) for r in run["rows"]]),
                "",
            ]
    parts.append(TARGETS)
    text = "\n".join(parts)
    (RESULTS / "bus.md").write_text(text + "\n")
    return text
