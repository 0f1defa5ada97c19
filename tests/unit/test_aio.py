import asyncio

import pytest
import uvloop

from turnlog.services.bootstrap import aio


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_runs_on_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TURNLOG_EVENT_LOOP", raising=False)
    assert issubclass(aio.run(_loop_type()), uvloop.Loop)


def test_standard_loop_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNLOG_EVENT_LOOP", "asyncio")
    assert not issubclass(aio.run(_loop_type()), uvloop.Loop)
