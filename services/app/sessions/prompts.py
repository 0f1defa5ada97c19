"""Prompts waiting for the user in this process: a handler blocked in ``prompt_file`` or
``prompt_integration`` until an upload, a connection or a decline answers it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from turnlog.contracts.events import AttachmentRef


@dataclass(frozen=True)
class Answer:
    """``file`` for an upload; ``connected`` or ``declined`` for an integration;
    ``stopped`` when the process stops while the prompt waits."""

    kind: str
    file: AttachmentRef | None = None
    integration: str | None = None


@dataclass
class _Waiting:
    session_id: str
    kind: str
    user_id: str
    integration: str | None
    future: asyncio.Future[Answer]
    accept: str = ""


def accepts(accept: str, file: AttachmentRef) -> bool:
    """Whether ``file`` is one of ``accept``: extensions (``.csv``) and content types
    (``text/csv``, ``image/*``), comma-separated, as in HTML; empty accepts anything."""
    wanted = [a.strip().lower() for a in accept.split(",") if a.strip()]
    if not wanted:
        return True
    name, kind = file.name.lower(), file.content_type.lower().split(";")[0].strip()
    for a in wanted:
        if a.startswith("."):
            if name.endswith(a):
                return True
        elif a.endswith("/*"):
            if kind.startswith(a[:-1]):
                return True
        elif a == kind:
            return True
    return False


class Prompts:
    """The open prompts by id, and integration prompts by (user, integration type)."""

    def __init__(self) -> None:
        self._waiting: dict[str, _Waiting] = {}

    def open(
        self,
        prompt_id: str,
        *,
        session_id: str,
        kind: str,
        user_id: str,
        integration: str | None = None,
        accept: str = "",
    ) -> asyncio.Future[Answer]:
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting[prompt_id] = _Waiting(session_id, kind, user_id, integration, future, accept)
        return future

    def close(self, prompt_id: str) -> None:
        self._waiting.pop(prompt_id, None)

    def answer(self, session_id: str, prompt_id: str, answer: Answer) -> str | None:
        """Resolve the prompt; None when done, else why it could not be."""
        waiting = self._waiting.get(prompt_id)
        if waiting is None or waiting.session_id != session_id or waiting.future.done():
            return f"no prompt {prompt_id} is waiting in session {session_id}"
        if (waiting.kind == "file") != (answer.kind == "file"):
            wanted = "a file" if waiting.kind == "file" else "connecting or declining"
            return f"prompt {prompt_id} is answered by {wanted}"
        if answer.kind == "file" and answer.file is None:
            return f"prompt {prompt_id} needs a file"
        if answer.file is not None and not accepts(waiting.accept, answer.file):
            return (
                f"prompt {prompt_id} accepts {waiting.accept}, not {answer.file.name}"
                f" ({answer.file.content_type})"
            )
        waiting.future.set_result(answer)
        return None

    def integration_connected(self, user_id: str, integration: str) -> int:
        """Resolve every prompt waiting for ``user_id`` to connect ``integration``."""
        resolved = 0
        for waiting in self._waiting.values():
            if (
                waiting.kind == "integration"
                and waiting.user_id == user_id
                and waiting.integration == integration
                and not waiting.future.done()
            ):
                waiting.future.set_result(Answer("connected", integration=integration))
                resolved += 1
        return resolved

    def stop_all(self, sessions: Callable[[str], bool] | None = None) -> int:
        """The process is stopping (or its sessions, ``sessions`` holding for their ids,
        are moving to another): every waiting prompt ends now (answered ``stopped``), so
        its turn can finish instead of holding the stop up; how many there were."""
        stopped = 0
        for waiting in self._waiting.values():
            if sessions is not None and not sessions(waiting.session_id):
                continue
            if not waiting.future.done():
                waiting.future.set_result(Answer("stopped"))
                stopped += 1
        return stopped

    def waiting(self) -> list[str]:
        """The ids of the prompts waiting now."""
        return [p for p, w in self._waiting.items() if not w.future.done()]

    def waiting_in(self, session_id: str) -> list[str]:
        """The ids of the prompts waiting now in ``session_id``."""
        waiting = self._waiting.items()
        return [p for p, w in waiting if w.session_id == session_id and not w.future.done()]

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self._waiting
