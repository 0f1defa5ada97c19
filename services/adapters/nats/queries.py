"""The projection queries over NATS request/reply: ``<prefix>.query.<name>`` with a JSON
``QueryRequest``, answered with a JSON ``QueryReply`` (see ``turnlog.contracts.query``).

Every request that has a reply subject gets a reply, whatever its body: a bad body, an
unknown name or a failing query is an ``{"error": {"code", "message"}}`` reply.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from turnlog.contracts import query as q
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.app.access import (
    Keys,
    PayloadTooLarge,
    Principal,
    input_failure,
    invalid,
    not_found,
)
from turnlog.services.app.ports import Queries
from turnlog.services.app.text import body_problem

log = structlog.get_logger("turnlog.query.bus")

QUEUE = "turnlog-query"

Query = Callable[[Queries, Principal, dict[str, Any]], Awaitable[msgspec.Struct]]


def _params(params: dict[str, Any], kind: type[msgspec.Struct]) -> Any:
    try:
        return msgspec.convert(params, type=kind)
    except msgspec.ValidationError as e:
        raise invalid(f"params: {e}") from None


async def _sessions_list(s: Queries, who: Principal, raw: dict[str, Any]) -> q.SessionPage:
    p: q.SessionsListParams = _params(raw, q.SessionsListParams)
    return await s.list_sessions(
        who,
        app=p.app,
        user=p.user,
        channel=p.channel,
        since=p.since,
        until=p.until,
        limit=p.limit,
        cursor=p.cursor,
    )


async def _sessions_get(s: Queries, who: Principal, raw: dict[str, Any]) -> q.SessionSummary:
    p: q.SessionParams = _params(raw, q.SessionParams)
    return await s.get_session(who, p.session_id)


async def _sessions_history(s: Queries, who: Principal, raw: dict[str, Any]) -> q.HistoryPage:
    p: q.HistoryParams = _params(raw, q.HistoryParams)
    return await s.history(who, p.session_id, limit=p.limit, cursor=p.cursor)


async def _sessions_data(s: Queries, who: Principal, raw: dict[str, Any]) -> q.SessionData:
    p: q.SessionParams = _params(raw, q.SessionParams)
    return await s.data(who, p.session_id)


async def _sessions_blocks(s: Queries, who: Principal, raw: dict[str, Any]) -> q.BlockList:
    p: q.SessionParams = _params(raw, q.SessionParams)
    return await s.blocks(who, p.session_id)


async def _sessions_events(s: Queries, who: Principal, raw: dict[str, Any]) -> q.EventPage:
    p: q.EventsParams = _params(raw, q.EventsParams)
    return await s.events(
        who, p.session_id, from_version=p.from_version, limit=p.limit, cursor=p.cursor
    )


async def _sessions_state(s: Queries, who: Principal, raw: dict[str, Any]) -> q.SessionState:
    p: q.StateParams = _params(raw, q.StateParams)
    return await s.state(who, p.session_id, as_of_version=p.as_of_version, at=p.at)


async def _collections_find(s: Queries, who: Principal, raw: dict[str, Any]) -> q.DocumentPage:
    return await s.find(who, _params(raw, q.FindRequest))


async def _projections_status(
    s: Queries, who: Principal, raw: dict[str, Any]
) -> q.ProjectionStatusList:
    _params(raw, q.NoParams)
    return await s.projection_status(who)


QUERIES: dict[str, Query] = {
    "sessions.list": _sessions_list,
    "sessions.get": _sessions_get,
    "sessions.history": _sessions_history,
    "sessions.data": _sessions_data,
    "sessions.blocks": _sessions_blocks,
    "sessions.events": _sessions_events,
    "sessions.state": _sessions_state,
    "collections.find": _collections_find,
    "projections.status": _projections_status,
}

_request = msgspec.json.Decoder(q.QueryRequest)
_encode = msgspec.json.Encoder().encode


def _error(code: str, message: str) -> bytes:
    return _encode(q.QueryReply(error=q.ErrorBody(code=code, message=message)))


def _decoded(data: bytes) -> q.QueryRequest:
    """``data`` as a query request whose texts the text policy admits; raises 400s."""
    problem = body_problem(data)
    if problem is not None:
        raise invalid(f"{problem[0]}: {problem[1]}")
    try:
        return _request.decode(data)
    except msgspec.DecodeError as e:
        raise invalid(f"the request is not a QueryRequest: {e}") from None


class QueryResponder:
    """Answers ``<prefix>.query.>`` requests (queue group ``turnlog-query``, so several
    responders share the load), up to ``concurrency`` at a time."""

    def __init__(
        self,
        nc: NATS,
        prefix: str,
        service: Queries,
        keys: Keys,
        *,
        concurrency: int = 64,
        grace: float = 5.0,
    ) -> None:
        self.nc = nc
        self.subject = f"{Subjects(prefix).prefix}.query.>"
        self.service = service
        self.keys = keys
        self.grace = grace
        self._base = self.subject[:-1]
        self._slots = asyncio.Semaphore(concurrency)
        self.ready = asyncio.Event()  # set once the subscription is known to the server

    async def run(self) -> None:
        """Answer requests until cancelled (or the connection closes); then unsubscribe
        and give answers in progress up to ``grace`` seconds."""
        sub = await self.nc.subscribe(self.subject, queue=QUEUE)
        tasks: set[asyncio.Task[None]] = set()
        try:
            await self.nc.flush()
            log.info("answering queries", subject=self.subject)
            self.ready.set()
            async for msg in sub.messages:
                await self._slots.acquire()
                task = asyncio.create_task(self._answer(msg))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            if tasks:
                _, running = await asyncio.wait(tasks, timeout=self.grace)
                for task in running:
                    task.cancel()
                if running:
                    await asyncio.wait(running, timeout=1.0)

    async def _answer(self, msg: Msg) -> None:
        try:
            if not msg.reply:  # a publish, not a request: nobody to answer
                log.info("query without a reply subject ignored", subject=msg.subject)
                return
            body = await self.answer(msg.subject, msg.data)
            if len(body) > self.nc.max_payload:
                too_large = PayloadTooLarge("the reply is too large: ask for a smaller page")
                body = _error(too_large.code, too_large.message)
            await self.nc.publish(msg.reply, body)
        except Exception as e:
            log.warning("could not reply to a query", subject=msg.subject, error=repr(e))
        finally:
            self._slots.release()

    async def answer(self, subject: str, data: bytes) -> bytes:
        """The reply to a request of ``data`` on ``subject``; never raises but for
        cancellation."""
        name = subject[len(self._base) :] if subject.startswith(self._base) else subject
        try:
            query = QUERIES.get(name)
            if query is None:
                raise not_found(f"no query named {name!r}; known: {', '.join(QUERIES)}")
            request = _decoded(data)
            who = self.keys.authenticate(request.key)
            return _encode(q.QueryReply(ok=await query(self.service, who, request.params)))
        except Exception as e:
            failure = input_failure(e, self.service.refuses)
            if failure is not None:
                return _error(failure.code, failure.message)
            log.error("query failed", query=name, exc_info=e)
            return _error("internal", "internal error")
