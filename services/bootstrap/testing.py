"""``turnlog.testing``: run an app on the memory adapters, with no servers, from a test.

    async with AppTester(app) as t:
        s = t.session(user={"id": "u1"})
        r = await s.send_message("count")     # a Round, as the producer client returns
        assert r.reply == "count=1"
        s.data, s.events                       # recorded session.data and events

The app runs on the same runtime as under ``turnlog run`` (the session host, the task
runner, the scheduler), on a clock that moves only when the test moves it. Tasks and
schedules run when the test asks (``run_tasks``, ``run_schedules``); a turn that waits for
the user (``prompt_file``, ``prompt_integration``) hands its round back with ``prompt``
set, and goes on when the test answers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import mimetypes
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec

from turnlog.contracts import bus
from turnlog.contracts.events import AttachmentRef
from turnlog.domain.errors import TurnlogError
from turnlog.services.adapters.memory.files import MemoryFiles
from turnlog.services.adapters.memory.log import MemoryLog
from turnlog.services.adapters.memory.notices import LocalNotices
from turnlog.services.adapters.memory.tasks import MemoryTaskQueue
from turnlog.services.adapters.nats.relay import envelope
from turnlog.services.app.rounds import Round
from turnlog.services.app.schedules.scheduler import Scheduler
from turnlog.services.app.sessions.host import SessionHost
from turnlog.services.app.sessions.outbound import BlockView, Collector, Outbound
from turnlog.services.app.sessions.prompts import Answer
from turnlog.services.app.sessions.turn import Inbound, TurnResult
from turnlog.services.app.spec import AppSpec
from turnlog.services.app.tasks.poster import SessionPoster
from turnlog.services.app.tasks.run import TaskRunner
from turnlog.services.app.tasks.values import TaskStatus
from turnlog.services.app.values import Attachment, SessionChannel, UserInfo
from turnlog.services.bootstrap.wiring import Wiring

START = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
_envelope = msgspec.json.Decoder(bus.EventEnvelope).decode


class TesterError(TurnlogError):
    """Raised when the tester is asked for what the runtime would refuse: answering a
    prompt that does not wait, a file it does not accept, a session that has ended."""

    code = "tester_error"

    __test__ = False  # not a pytest test class


class FixedClock:
    """Now, as the test sets it: ``advance(minutes=5)``, ``set(datetime)``."""

    def __init__(self, now: datetime = START) -> None:
        self.now = _aware(now)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta | None = None, **parts: float) -> datetime:
        self.now += (delta or timedelta()) + timedelta(**parts)
        return self.now

    def set(self, now: datetime) -> datetime:
        self.now = _aware(now)
        return self.now


class AppTester:
    """An app on the memory adapters. ``now``: where the fixed clock starts;
    ``turn_timeout``: how long a turn may run before the tester gives up on it."""

    def __init__(self, app: AppSpec, *, now: datetime = START, turn_timeout: float = 30.0) -> None:
        self.app = app
        self.turn_timeout = turn_timeout
        self.clock = FixedClock(now)
        self.files = MemoryFiles()
        self.queue = MemoryTaskQueue()
        notices = LocalNotices()
        self.wiring = Wiring.memory(self.clock, files=self.files, queue=self.queue, notices=notices)
        self.delivered = _Delivered()
        self._host = self.wiring.host(app, self.delivered) if app.message_handler else None
        if self._host is not None:
            notices.listeners.append(self._host.integration_changed)
        self.scheduler: Scheduler = self.wiring.scheduler(app, worker="tester")
        self._schedules_checked = self.clock.now
        self._sessions: list[TestSession] = []

    @property
    def host(self) -> SessionHost:
        """The runtime of the app's sessions."""
        if self._host is None:
            raise TesterError(f"app {self.app.name!r} has no @app.message() handler")
        return self._host

    @property
    def log(self) -> MemoryLog:
        log = self.wiring.log
        assert isinstance(log, MemoryLog)
        return log

    async def __aenter__(self) -> AppTester:
        if self._host is not None:
            await self._host.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for session in self._sessions:
            await session.cancel_waiting()
        await self.scheduler.stop()
        if self._host is not None:
            await self._host.stop()

    def session(
        self,
        user: Mapping[str, Any] | UserInfo | None = None,
        session_id: str | None = None,
        channel: str = "test",
    ) -> TestSession:
        """A session of the app, as ``Client.session`` makes one: new, or by id."""
        self.host  # noqa: B018  (an app without a message handler has no sessions)
        if isinstance(user, Mapping):
            user = UserInfo(**user)
        made = TestSession(
            self, session_id or str(uuid.uuid4()), user or UserInfo("tester"), channel
        )
        self._sessions.append(made)
        return made

    # -- what runs in the background elsewhere ------------------------------------------

    async def run_tasks(self) -> list[TaskStatus]:
        """Run every submitted task (and those they submit) to its end: completed,
        failed after its retries, or cancelled. Their statuses, in the order run."""
        poster = SessionPoster(self._host) if self._host is not None else None
        runtime = self.wiring.runtime(self.app)
        ran = []
        while (queued := self.queue.take(self.app.name)) is not None:
            runner = TaskRunner(
                self.app, self.wiring.tasks, poster, "tester", queued.task_id, runtime
            )
            self.queue.running(queued.task_id, runner.cancel)
            try:
                await runner.run()
            finally:
                self.queue.running(queued.task_id, None)
            ran.append(queued.task_id)
        await self._refresh()
        tasks = runtime.tasks
        assert tasks is not None
        return [await tasks.status(task_id) for task_id in ran]

    async def run_schedules(self) -> list[str]:
        """Fire each schedule due since the last call (its latest tick, as a runtime
        waking late does) and wait for the runs; the runs fired (``<stream>@<tick>``)."""
        since, self._schedules_checked = self._schedules_checked, self.clock.now
        fired = await self.scheduler.run_due(since, self.clock.now)
        await self._refresh()
        return fired

    async def connect_integration(
        self,
        user_id: str,
        type: str,
        credentials: Mapping[str, Any],
        *,
        scopes: Sequence[str] = (),
    ) -> None:
        """Connect ``type`` for ``user_id`` (as ``turnlog integrations connect`` does);
        a turn waiting for it in ``prompt_integration`` goes on (``await s.wait()``)."""
        await self.wiring.integrations.connect(
            user_id, type, credentials, actor="operator:tester", scopes=scopes
        )

    async def _refresh(self) -> None:
        for session in self._sessions:
            await session.refresh()


class TestSession:
    """One session of the app under test: what a producer can do to it, and what it
    recorded (``data``, ``events``, both as of the last call)."""

    __test__ = False  # not a pytest test class

    def __init__(self, tester: AppTester, session_id: str, user: UserInfo, channel: str):
        self.tester, self.id, self.user, self.channel = tester, session_id, user, channel
        self.data: dict[str, Any] = {}
        self.events: list[bus.EventEnvelope] = []
        self._turn: asyncio.Task[TurnResult] | None = None
        self._message_id = ""

    @property
    def uuid(self) -> uuid.UUID:
        return uuid.UUID(self.id)

    @property
    def delivered(self) -> list[Outbound]:
        """What the session showed its user live (replies, notifications, chunks,
        blocks), in order."""
        return self.tester.delivered.of(self.uuid)

    async def send_message(self, text: str, *, files: Sequence[Mapping[str, Any]] = ()) -> Round:
        """Send ``text`` (with ``files``: ``{"name": ..., "data": bytes}`` or ``{"path":
        ...}``) and run its turn; the round once the turn completes, or once it waits on a
        prompt (``round.prompt``)."""
        if self._turn is not None:
            raise TesterError("the last turn waits on a prompt: answer it first")
        self._message_id = uuid.uuid4().hex
        inbound = Inbound(
            message_id=self._message_id,
            text=text,
            user=self.user,
            channel=SessionChannel(type=self.channel),
            session_id=self.uuid,
            attachments=tuple(self._attach(f) for f in files),
        )
        self._turn = asyncio.create_task(self.tester.host.handle(inbound))
        return await self.wait()

    async def wait(self) -> Round:
        """The round of the turn running now: once it completes, or waits on a prompt."""
        turn = self._turn
        if turn is None:
            raise TesterError("no turn is running in this session")
        changed, limit = self.tester.delivered.changed, self.tester.turn_timeout
        deadline = asyncio.get_running_loop().time() + limit
        while not turn.done() and not self.tester.host.prompts.waiting_in(self.id):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TesterError(
                    f"the turn neither completed nor waited on a prompt within {limit:g} s"
                    " (AppTester(turn_timeout=...))"
                )
            changed.clear()
            waiter = asyncio.ensure_future(changed.wait())
            await asyncio.wait({turn, waiter}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        if turn.done():
            self._turn = None
            turn.result()  # what the runtime raised (an ended session) is the test's
        await self.refresh()
        return self._round()

    async def upload(self, prompt_id: str, file: Mapping[str, Any]) -> Round:
        """Answer the handler waiting in ``prompt_file`` with ``file``; the round."""
        answer = Answer("file", file=self._stored(file))
        return await self._answer(prompt_id, answer)

    async def decline(self, prompt_id: str) -> Round:
        """Decline the integration a handler waits for in ``prompt_integration``."""
        return await self._answer(prompt_id, Answer("declined"))

    async def update_session_var(self, variables: Mapping[str, Any]) -> list[str]:
        """Set ``session.data`` keys from outside a turn; the keys that changed."""
        changed = await self.tester.host.set_vars(
            self.uuid, dict(variables), actor="producer:tester", message_id=uuid.uuid4().hex
        )
        await self.refresh()
        return changed

    async def stop(self) -> bool:
        """End the session (its exit hooks run); False if it had ended already."""
        ended = await self.tester.host.close(self.uuid)
        await self.refresh()
        return ended

    async def refresh(self) -> None:
        """Read ``data`` and ``events`` from the log again."""
        log = self.tester.log
        records = await log.keyring.unseal(await log.read_stream(self.id))
        self.events = [_envelope(envelope(r)) for r in records]
        if records:  # the session as the runtime loads it: its data folded by the model
            session = await self.tester.wiring.repository().load(self.uuid)
            self.data = copy.deepcopy(session.data)

    async def cancel_waiting(self) -> None:
        if self._turn is not None:
            self._turn.cancel()
            with contextlib.suppress(BaseException):
                await self._turn

    async def _answer(self, prompt_id: str, answer: Answer) -> Round:
        problem = self.tester.host.prompts.answer(self.id, prompt_id, answer)
        if problem is not None:
            raise TesterError(problem)
        return await self.wait()

    def _round(self) -> Round:
        events = [e for e in self.events if e.correlation_id == self._message_id]
        done = [e for e in events if e.type == "session.turn_completed"]
        prompt = None
        if not done:
            for item in reversed(self.delivered):
                if isinstance(item, BlockView) and item.payload.get("status") == "waiting":
                    prompt = item.payload
                    break
        return Round(
            message_id=self._message_id,
            session_id=self.id,
            events=events,
            outcome=str(done[-1].payload.get("outcome", "")) if done else "",
            prompt=prompt,
        )

    def _attach(self, spec: Mapping[str, Any]) -> Attachment:
        ref = self._stored(spec)
        return Attachment(name=ref.name, content_type=ref.content_type, url=ref.url, size=ref.size)

    def _stored(self, spec: Mapping[str, Any]) -> AttachmentRef:
        if "path" in spec:
            path = Path(spec["path"])
            data, name = path.read_bytes(), spec.get("name") or path.name
        elif "data" in spec and "name" in spec:
            data, name = bytes(spec["data"]), spec["name"]
        else:
            raise TesterError(f"a file needs a path, or data with a name: {dict(spec)!r}")
        content_type = spec.get("content_type") or _guess(name)
        return self.tester.files.put(name, data, content_type)


class _Delivered(Collector):
    """Everything delivered, and an event set at each delivery."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    async def deliver(self, session_id: uuid.UUID, item: Outbound) -> None:
        await super().deliver(session_id, item)
        self.changed.set()


def _guess(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("the clock needs an aware datetime (e.g. tzinfo=UTC)")
    return moment.astimezone(UTC)
