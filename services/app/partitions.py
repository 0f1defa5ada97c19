"""How the runtimes of one app share its sessions: the sessions fall into PARTITIONS
partitions, each owned by one runtime at a time, and each runtime aims at an equal share.

Only arithmetic here: which partitions a runtime should take or give away, tick by tick,
from what it holds, what anyone holds and how many runtimes are alive. The ownership
itself (claims, consumers) is the adapters'.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Set
from dataclasses import dataclass, field

PARTITIONS = 16
"""Sessions of an app fall into this many partitions; more runtimes than this do not share
its turns any further (the others stand by)."""

PATIENCE = 2
"""Ticks a runtime must be over its share before it gives partitions away, and ticks a
partition must stay free before a runtime at its share takes it anyway: a runtime that
starts or stops, seen for a moment, moves nothing."""


def share(live: int, partitions: int = PARTITIONS) -> int:
    """How many partitions each of ``live`` runtimes should hold: ceil(partitions / live),
    so that between them they hold every one."""
    return -(-partitions // max(live, 1))


@dataclass(frozen=True)
class Moves:
    """What a runtime does this tick: partitions to claim, partitions to let go."""

    claim: tuple[int, ...] = ()
    release: tuple[int, ...] = ()


@dataclass
class Balance:
    """One runtime's side of the balance, with the memory its hysteresis needs."""

    partitions: int = PARTITIONS
    patience: int = PATIENCE
    rng: random.Random = field(default_factory=random.Random)
    _over: int = 0
    _free_for: dict[int, int] = field(default_factory=dict)

    def moves(
        self,
        mine: Set[int],
        taken: Set[int],
        live: int,
        in_flight: Mapping[int, int] | None = None,
    ) -> Moves:
        """This tick's moves, given the partitions this runtime keeps (``mine``), those
        anyone holds (``taken``, this runtime's included) and the live runtimes.

        Under its share, a runtime claims free partitions (at random, so that two claiming
        at once rarely want the same); over it, for ``patience`` ticks running and with
        no partition free, it lets go of the excess, those with the fewest turns in
        flight first. A partition nobody takes for ``patience`` ticks is taken anyway:
        its sessions must not wait on a runtime that does not claim."""
        quota = share(live, self.partitions)
        free = sorted(set(range(self.partitions)) - set(taken) - set(mine))
        self._free_for = {p: self._free_for.get(p, 0) + 1 for p in free}
        wanted = self.rng.sample(free, min(len(free), max(quota - len(mine), 0)))
        stale = [p for p in free if self._free_for[p] > self.patience and p not in wanted]
        claim = tuple(sorted(wanted + stale))
        excess = len(mine) - quota
        self._over = self._over + 1 if excess > 0 and not free else 0
        if self._over < self.patience:
            return Moves(claim=claim)
        self._over = 0
        load = in_flight or {}
        lightest = sorted(mine, key=lambda p: (load.get(p, 0), -p))
        return Moves(claim=claim, release=tuple(sorted(lightest[:excess])))


def ranges(partitions: Set[int]) -> str:
    """``{0, 1, 2, 5}`` as ``0-2,5``; ``-`` for none."""
    spans: list[list[int]] = []
    for p in sorted(partitions):
        if spans and p == spans[-1][1] + 1:
            spans[-1][1] = p
        else:
            spans.append([p, p])
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans) or "-"
