"""Waiting until cancelled when a cancellation may already have been lost.

On Python 3.11 ``asyncio.wait_for`` returns the result of a future that completes in the
same loop iteration as its caller is cancelled, and the cancellation is lost: the task
goes on, though ``Task.cancelling()`` still counts it. nats-py waits for every request
that way, so a part cancelled while it subscribes goes on to wait for a cancellation that
already came, and its process never stops. These honour one that was lost.
"""

from __future__ import annotations

import asyncio
from typing import NoReturn


def cancel_requested() -> bool:
    """Whether the running task has been asked to stop (whether or not it saw it)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def checkpoint() -> None:
    """Stop here if the running task was cancelled and did not see it: a loop that
    runs until cancelled calls it each time round."""
    if cancel_requested():
        raise asyncio.CancelledError


async def until_cancelled() -> NoReturn:
    """Wait until the running task is cancelled, or stop now if it was already."""
    checkpoint()
    await asyncio.Event().wait()
    raise AssertionError("an event no one can set was set")
