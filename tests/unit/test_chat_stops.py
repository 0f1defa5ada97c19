"""`turnlog chat` serves its app in-process: when that stops, the chat says so and ends
rather than waiting on a line or an answer that will never come."""

from __future__ import annotations

import asyncio

import pytest

from turnlog.services.cli.chat import AppStopped, _while_serving


async def test_work_that_finishes_first_is_returned() -> None:
    server = asyncio.create_task(asyncio.Event().wait())
    assert await _while_serving(server, asyncio.sleep(0, result="line")) == "line"
    server.cancel()


async def test_a_server_that_stops_ends_the_wait_with_why() -> None:
    async def fails() -> None:
        await asyncio.sleep(0.01)
        raise RuntimeError("the database went away for good")

    server = asyncio.create_task(fails())
    never = asyncio.Event()
    with pytest.raises(AppStopped, match="the database went away for good"):
        await asyncio.wait_for(_while_serving(server, never.wait()), timeout=5)
