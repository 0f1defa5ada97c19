"""Notices within one process: each listener hears every announcement at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Listener = Callable[[str, str, bool], Awaitable[None]]


class LocalNotices:
    def __init__(self) -> None:
        self.listeners: list[Listener] = []

    async def integration_changed(self, user_id: str, type: str, connected: bool) -> None:
        for listener in list(self.listeners):
            await listener(user_id, type, connected)
