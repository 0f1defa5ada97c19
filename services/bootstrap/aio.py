"""The event loop turnlog's processes run on.

uvloop (libuv, from the makers of asyncpg) where it is installed, which it is on Linux and
macOS by default; the standard loop elsewhere or when ``TURNLOG_EVENT_LOOP=asyncio``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory(standard: bool = False) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if standard or os.environ.get("TURNLOG_EVENT_LOOP", "uvloop") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], *, standard: bool = False) -> T:
    """Run ``main`` to completion; ``standard`` asks for the standard library's loop (whose
    I/O goes through Python's ``socket`` module, where a re-run can watch it)."""
    with asyncio.Runner(loop_factory=loop_factory(standard)) as runner:
        return runner.run(main)
