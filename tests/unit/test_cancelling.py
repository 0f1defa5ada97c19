"""A part whose cancellation was lost on its way (Python 3.11's ``asyncio.wait_for``, which
nats-py waits with, returns a result that came with the cancellation) still stops: where
it parks, at the top of its loops, and in the supervisor."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from turnlog.services.app.cancelling import checkpoint, until_cancelled
from turnlog.services.bootstrap.supervision import Supervisor


async def answered_as_cancelled(answer: asyncio.Future[int]) -> None:
    """A request answered in the loop iteration its caller is cancelled in."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().call_soon(lambda: (answer.set_result(1), task.cancel()))
    with contextlib.suppress(asyncio.CancelledError):  # as wait_for does on Python 3.12
        await asyncio.wait_for(answer, 10)


async def lose_a_cancellation() -> None:
    await answered_as_cancelled(asyncio.get_running_loop().create_future())


async def stops_within(task: asyncio.Task[None], seconds: float = 2.0) -> None:
    done, _ = await asyncio.wait([task], timeout=seconds)
    if not done:
        task.cancel()
        pytest.fail("the part went on after it was cancelled")
    assert task.cancelled()


async def test_a_part_parked_after_its_cancellation_was_lost_stops() -> None:
    async def part() -> None:
        await lose_a_cancellation()
        await until_cancelled()

    await stops_within(asyncio.create_task(part()))


async def test_a_loop_whose_cancellation_was_lost_stops_at_its_next_round() -> None:
    rounds = 0

    async def part() -> None:
        nonlocal rounds
        while True:
            checkpoint()
            rounds += 1
            if rounds == 1:
                await lose_a_cancellation()
            await asyncio.sleep(0.01)

    await stops_within(asyncio.create_task(part()))
    assert rounds == 1


async def test_the_supervisor_does_not_start_again_a_part_that_returned_once_cancelled() -> None:
    starts = 0

    async def part() -> None:
        nonlocal starts
        starts += 1
        await lose_a_cancellation()  # then it returns, as if it had ended by itself

    supervisor = Supervisor(min_delay=0.01)
    await stops_within(supervisor.add("part", part))
    assert starts == 1
    assert supervisor.parts["part"].state == "stopped"


async def test_a_part_cancelled_the_ordinary_way_stops_too() -> None:
    async def part() -> None:
        await until_cancelled()

    task = asyncio.create_task(part())
    await asyncio.sleep(0)
    task.cancel()
    await stops_within(task)
