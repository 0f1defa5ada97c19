"""What a re-run turn runs against instead of the world, and Stopped, which ends it early."""

from __future__ import annotations

import os
import socket
import subprocess
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from turnlog.contracts import events as wire
from turnlog.domain.session import Session as SessionAggregate
from turnlog.services.app import mapping
from turnlog.services.app.log.records import NewEvent
from turnlog.services.app.mapping import Metadata


class Stopped(BaseException):
    """Ends a re-run turn early. A BaseException, so a handler's ``except Exception``
    cannot swallow it."""

    def __init__(self, result: str, reason: str, actual: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.result, self.reason, self.actual = result, reason, actual


class Recorded:
    """The turn's recorded effects and prompts, handed out in order (``RecordedEffects``)."""

    def __init__(
        self,
        effects: Sequence[tuple[str, Any]],
        prompts: Sequence[tuple[str, str, str, Any]] = (),
    ) -> None:
        self._queue = deque(effects)
        self._prompts = deque(prompts)

    def prompt(self, kind: str) -> tuple[str, str, Any]:
        if not self._prompts:
            raise Stopped("diverged", f"a {kind} prompt, where the record has none")
        prompt_id, recorded_kind, outcome, answer = self._prompts.popleft()
        if recorded_kind != kind:
            raise Stopped("diverged", f"a {kind} prompt where a {recorded_kind} prompt was")
        return prompt_id, outcome, answer

    def take(self, name: str) -> Any:
        actual = {"type": wire.EffectRecorded.TYPE, "name": name, "result": None}
        if not self._queue:
            raise Stopped("diverged", f"effect {name!r} was not recorded in this turn", actual)
        recorded, result = self._queue.popleft()
        if recorded != name:
            raise Stopped(
                "diverged", f"effect {name!r} where effect {recorded!r} was recorded", actual
            )
        return result

    def refuse(self, what: str) -> BaseException:
        return Stopped("not_rerunnable", f"{what} is not re-run")


class Unrecorded(Mapping[str, Any]):
    """``session.integrations`` in a re-run: credentials are never on record, so using
    them makes the turn not re-runnable."""

    def __init__(self, replaying: Recorded) -> None:
        self._replaying = replaying

    def _refuse(self) -> BaseException:
        return self._replaying.refuse("session.integrations")

    def __getitem__(self, key: str) -> Any:
        raise self._refuse()

    def __iter__(self) -> Iterator[str]:
        raise self._refuse()

    def __len__(self) -> int:
        raise self._refuse()

    def __contains__(self, key: object) -> bool:
        raise self._refuse()


class Collector:
    """Stands in for the repository: keeps the events instead of appending them."""

    def __init__(self) -> None:
        self.events: list[NewEvent] = []

    async def save(self, session: SessionAggregate, meta: Metadata) -> None:
        self.events += [mapping.to_new_event(e, meta) for e in session.collect_events()]


@contextmanager
def sealed(seen: list[str]) -> Iterator[None]:
    """Refuse connections, name lookups and new processes (noting what was tried)."""

    def refuse(what: str) -> Stopped:
        seen.append(what)
        return Stopped("non_deterministic", what)

    def connect(sock: socket.socket, address: Any, *args: Any) -> Any:
        raise refuse(f"connect to {_where(address)}")

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> Any:
        raise refuse(f"connect to {_where(address)}")

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        raise refuse(f"look up {host}:{port}")

    def popen(args: Any, *rest: Any, **kwargs: Any) -> Any:
        raise refuse(f"start a process ({args!r})")

    def system(command: Any) -> Any:
        raise refuse(f"start a process ({command!r})")

    patches: list[tuple[Any, str, Any]] = [
        (socket.socket, "connect", connect),
        (socket.socket, "connect_ex", connect),
        (socket, "create_connection", create_connection),
        (socket, "getaddrinfo", getaddrinfo),
        (subprocess, "Popen", popen),
        (os, "system", system),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    try:
        for owner, name, replacement in patches:
            setattr(owner, name, replacement)
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def _where(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)
