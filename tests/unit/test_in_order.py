"""A session's inbound messages are handled in the order they came, even when one fails
for a while: it is tried again where it is, the later ones waiting; once it gives up,
the ones behind it are let go too, so none overtakes it."""

from __future__ import annotations

import asyncio

import pytest

from turnlog.services.adapters.nats import in_order
from turnlog.services.adapters.nats.in_order import HandleLater, InOrder


class Refused(Exception):
    """Stands for a message refused for good (dead-lettered)."""


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(in_order, "FIRST_DELAY", 0.01)
    monkeypatch.setattr(in_order, "MAX_DELAY", 0.02)


async def test_a_message_failing_for_a_while_is_not_overtaken_by_the_next() -> None:
    handled: list[str] = []
    failures = {"m1": 3}

    async def attempt(message_id: str) -> None:
        if failures.get(message_id):
            failures[message_id] -= 1
            raise ConnectionError("the database restarts")
        handled.append(message_id)

    order = InOrder(patience=5.0, permanent=(Refused,))
    await asyncio.gather(
        *(order.run("s", lambda m=m: attempt(m)) for m in ("m1", "m2", "m3")),
        order.run("other", lambda: attempt("o1")),
    )
    assert [m for m in handled if m.startswith("m")] == ["m1", "m2", "m3"]
    assert handled[0] == "o1"  # another session's message does not wait for these
    assert failures["m1"] == 0 and order._gates == {}


async def test_once_a_message_gives_up_the_ones_behind_it_are_let_go_too() -> None:
    tried: list[str] = []

    async def attempt(message_id: str) -> None:
        tried.append(message_id)
        if message_id == "m1":
            raise ConnectionError("the database is away")

    order = InOrder(patience=0.1, permanent=(Refused,))
    results = await asyncio.gather(
        *(order.run("s", lambda m=m: attempt(m)) for m in ("m1", "m2")), return_exceptions=True
    )
    assert isinstance(results[0], ConnectionError) and isinstance(results[1], HandleLater)
    assert set(tried) == {"m1"} and len(tried) > 1  # tried again, then given up
    await order.run("s", lambda: attempt("m3"))  # the session's next, later, goes on
    assert tried[-1] == "m3"


async def test_a_message_refused_for_good_is_not_tried_again_and_holds_nothing_up() -> None:
    tried: list[str] = []

    async def attempt(message_id: str) -> None:
        tried.append(message_id)
        if message_id == "m1":
            raise Refused("not valid")

    order = InOrder(patience=5.0, permanent=(Refused,))
    results = await asyncio.gather(
        *(order.run("s", lambda m=m: attempt(m)) for m in ("m1", "m2")), return_exceptions=True
    )
    assert isinstance(results[0], Refused) and results[1] is None
    assert tried == ["m1", "m2"]


async def test_without_a_session_a_message_runs_at_once_and_once() -> None:
    tried = 0
    release = asyncio.Event()

    async def slow() -> None:
        await release.wait()

    async def failing() -> None:
        nonlocal tried
        tried += 1
        raise ConnectionError("away")

    order = InOrder(patience=5.0)
    holding = asyncio.create_task(order.run("s", slow))
    await asyncio.sleep(0)
    with pytest.raises(ConnectionError):
        await order.run(None, failing)  # a prompt's answer: not behind the turn
    assert tried == 1
    release.set()
    await holding
