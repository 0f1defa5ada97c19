"""Progress bars for long runs: rate, count and (when the total is known) ETA, on a
terminal's stderr; nothing when stderr is not a terminal."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Protocol

from tqdm import tqdm


class Progress(Protocol):
    def __call__(self, done: int, total: int | None = None) -> None: ...


@contextlib.contextmanager
def progress_bar(desc: str, unit: str = "events") -> Iterator[Progress]:
    """A callback taking the running count (and the total, once known)."""
    bar = tqdm(
        desc=desc,
        unit=f" {unit}",
        unit_scale=True,
        disable=not sys.stderr.isatty(),
        file=sys.stderr,
    )

    def update(done: int, total: int | None = None) -> None:
        if total is not None:
            bar.total = total
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        bar.close()
