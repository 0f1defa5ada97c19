"""CPU time of the processes a benchmark runs, per label, over a measured window.

A label is one process (a ``turnlog`` process, the producers) or a process and its
children (the PostgreSQL server and its backends). User and system time are summed; a
child that starts during the window counts from zero, one that ends takes its time with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psutil

from turnlog.services.adapters.embedded.servers import EmbeddedInfra

MACHINE = "machine"


def _cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


@dataclass
class CpuMeter:
    """Processes by label; ``with_children``: labels whose processes' children count too."""

    processes: dict[str, psutil.Process] = field(default_factory=dict)
    with_children: set[str] = field(default_factory=set)

    def add(self, label: str, pid: int, *, children: bool = False) -> None:
        self.processes[label] = psutil.Process(pid)
        if children:
            self.with_children.add(label)

    def snapshot(self) -> dict[str, dict[int, float]]:
        """CPU seconds so far: label -> pid -> seconds; and under MACHINE, the whole
        machine's busy seconds (every core, every process: the benchmark's and others')."""
        machine = psutil.cpu_times()
        busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        taken: dict[str, dict[int, float]] = {MACHINE: {0: busy}}
        for label, process in self.processes.items():
            family = [process]
            if label in self.with_children:
                try:
                    family += process.children(recursive=True)
                except psutil.Error:
                    pass
            taken[label] = {p.pid: _cpu(p) for p in family}
        return taken

    @staticmethod
    def spent(
        before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]
    ) -> dict[str, float]:
        """CPU seconds per label between two snapshots."""
        spent: dict[str, float] = {}
        for label, pids in after.items():
            was = before.get(label, {})
            spent[label] = sum(seconds - was.get(pid, 0.0) for pid, seconds in pids.items())
        return spent


def embedded_servers(meter: CpuMeter, infra: EmbeddedInfra, *, postgres: bool, nats: bool) -> None:
    """Measure the embedded servers in use too (not servers configured elsewhere, which
    may not even run on this machine)."""
    pg = infra.postgres.status() if postgres else None
    if pg is not None:
        meter.add("PostgreSQL", pg.pid, children=True)
    ns = infra.nats.status() if nats else None
    if ns is not None:
        meter.add("NATS", ns.pid)
