"""The query API's routes: sessions and what they hold, collections' documents, the
projections' positions; every one needs an API key (``Authorization: Bearer <key>``).

Litestar resolves handler annotations at runtime from this module's globals, which works
with ``from __future__ import annotations`` as long as every name used in a handler or
dependency signature is imported at module level (not under ``TYPE_CHECKING``).
"""

from __future__ import annotations

from typing import Annotated

from litestar import Router, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, PathParameter, QueryParameter

from turnlog.contracts import query as q
from turnlog.services.adapters.http.auth import SECURITY, caller
from turnlog.services.app.access import MAX_LIMIT, Keys, Principal
from turnlog.services.app.ports import Queries

_ERRORS: dict[int, ResponseSpec] = {
    status: ResponseSpec(data_container=q.ErrorBody, generate_examples=False, description=text)
    for status, text in (
        (400, "Invalid request: a parameter, cursor or body that cannot be used"),
        (401, "Missing or unknown API key"),
        (403, "The key may not see this"),
        (404, "No such session (or not one this key may see)"),
        (500, "Internal error"),
    )
}

Limit = Annotated[
    int, QueryParameter(ge=1, le=MAX_LIMIT, description=f"Page size, 1 to {MAX_LIMIT}")
]
Cursor = Annotated[str | None, QueryParameter(description="next_cursor of the previous page")]
SessionId = Annotated[str, PathParameter(description="The session's id")]
Service = NamedDependency[Queries]
Who = NamedDependency[Principal]


@get(
    "/v1/sessions",
    responses=_ERRORS,
    summary="List sessions",
    description="Sessions, newest first. since/until (ISO 8601) bound their start time.",
)
async def list_sessions(
    service: Service,
    who: Who,
    app: Annotated[str | None, QueryParameter(description="Only this app's")] = None,
    user: Annotated[str | None, QueryParameter(description="Only this user's")] = None,
    channel: Annotated[str | None, QueryParameter(description="Only this channel type")] = None,
    since: Annotated[str | None, QueryParameter(description="ISO 8601 time, inclusive")] = None,
    until: Annotated[str | None, QueryParameter(description="ISO 8601 time, exclusive")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> q.SessionPage:
    return await service.list_sessions(
        who,
        app=app,
        user=user,
        channel=channel,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )


@get("/v1/sessions/{session_id:str}", summary="Get one session", responses=_ERRORS)
async def get_session(service: Service, who: Who, session_id: SessionId) -> q.SessionSummary:
    return await service.get_session(who, session_id)


@get(
    "/v1/sessions/{session_id:str}/history",
    responses=_ERRORS,
    summary="A session's history",
    description="Messages in and out, oldest first.",
)
async def history(
    service: Service,
    who: Who,
    session_id: SessionId,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> q.HistoryPage:
    return await service.history(who, session_id, limit=limit, cursor=cursor)


@get("/v1/sessions/{session_id:str}/data", summary="A session's data", responses=_ERRORS)
async def data(service: Service, who: Who, session_id: SessionId) -> q.SessionData:
    return await service.data(who, session_id)


@get("/v1/sessions/{session_id:str}/blocks", summary="A session's blocks", responses=_ERRORS)
async def blocks(service: Service, who: Who, session_id: SessionId) -> q.BlockList:
    return await service.blocks(who, session_id)


@get(
    "/v1/sessions/{session_id:str}/events",
    responses=_ERRORS,
    summary="A session's events",
    description="The session's own events from from_version, straight from the log.",
)
async def events(
    service: Service,
    who: Who,
    session_id: SessionId,
    from_version: Annotated[
        int, QueryParameter(ge=1, le=2**63 - 1, description="First version to return")
    ] = 1,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> q.EventPage:
    return await service.events(
        who, session_id, from_version=from_version, limit=limit, cursor=cursor
    )


@get(
    "/v1/sessions/{session_id:str}/state",
    responses=_ERRORS,
    summary="A session as of a point",
    description="History, data and blocks as of a version or a time, from events alone.",
)
async def state(
    service: Service,
    who: Who,
    session_id: SessionId,
    as_of_version: Annotated[
        int | None, QueryParameter(ge=1, le=2**31 - 1, description="As of this version")
    ] = None,
    at: Annotated[str | None, QueryParameter(description="As of this ISO 8601 time")] = None,
) -> q.SessionState:
    return await service.state(who, session_id, as_of_version=as_of_version, at=at)


@post(
    "/v1/collections/find",
    responses=_ERRORS,
    status_code=200,
    summary="Find documents",
    description="Documents of one collection in _id order; a user key sees its user's only.",
)
async def find(service: Service, who: Who, data: JSONBody[q.FindRequest]) -> q.DocumentPage:
    return await service.find(who, data)


@get("/v1/projections", summary="Projection positions and lag", responses=_ERRORS)
async def projections(service: Service, who: Who) -> q.ProjectionStatusList:
    return await service.projection_status(who)


def query_router(service: Queries, keys: Keys) -> Router:
    """The routes above, answering from ``service``, with ``keys`` deciding who sees what."""

    def provide_service() -> Queries:
        return service

    return Router(
        "/",
        route_handlers=[
            list_sessions,
            get_session,
            history,
            state,
            data,
            blocks,
            events,
            find,
            projections,
        ],
        dependencies={
            "service": Provide(provide_service, sync_to_thread=False),
            "who": caller(keys),
        },
        security=[{SECURITY: []}],
        tags=["query"],
    )
