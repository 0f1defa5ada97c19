"""Integrations over HTTP, beside the query API: ``GET /v1/integrations/{user_id}``
lists a user's connected integrations (never their credentials);
``POST /v1/integrations/{user_id}/{integration}`` with ``{"credentials": {...}}``
connects one and ``DELETE`` disconnects it.

Listing takes a key that sees the user (``admin``, ``read`` or the user's own);
connecting and disconnecting take an ``admin`` key (recorded as ``operator:api``) or the
user's own key (recorded as ``user:<id>``).

Litestar resolves handler annotations from this module's globals: every name in a
handler signature is imported at module level.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Router, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter

from turnlog.contracts import query as q
from turnlog.domain.integrations import Connection, IntegrationError
from turnlog.services.adapters.http.auth import SECURITY, caller
from turnlog.services.app.access import Keys, Principal, forbidden, invalid, not_found
from turnlog.services.app.integrations import Integrations, erased

UserId = Annotated[str, PathParameter(description="The app user's id")]
IntegrationType = Annotated[
    str, PathParameter(description="The integration's type, e.g. github", max_length=64)
]
Service = NamedDependency[Integrations]
Who = NamedDependency[Principal]


def item(c: Connection) -> q.IntegrationItem:
    return q.IntegrationItem(
        type=c.type,
        connected_at=c.connected_at.isoformat(timespec="microseconds"),
        connected_by=c.connected_by,
        scopes=list(c.scopes),
        erased=erased(c),
    )


def _reader(who: Principal, user_id: str) -> None:
    if not who.everyone and who.user_id != user_id:
        raise forbidden("a user's key sees its own user's integrations only")


def _writer(who: Principal, user_id: str) -> str:
    """The actor a change by ``who`` is recorded with, or 403."""
    if who.scope == "admin":
        return "operator:api"
    if who.scope == "user" and who.user_id == user_id:
        return f"user:{user_id}"
    raise forbidden("connecting integrations takes an admin key or the user's own key")


@get("/{user_id:str}", summary="A user's integrations")
async def list_integrations(integrations: Service, who: Who, user_id: UserId) -> q.IntegrationList:
    _reader(who, user_id)
    found = await integrations.connections(user_id)
    return q.IntegrationList(user_id=user_id, items=[item(c) for c in found])


@post(
    "/{user_id:str}/{integration:str}",
    status_code=200,
    summary="Connect an integration",
    description="Records it with the credentials sealed; connecting again replaces them.",
)
async def connect_integration(
    integrations: Service,
    who: Who,
    user_id: UserId,
    integration: IntegrationType,
    data: JSONBody[q.ConnectIntegrationBody],
) -> q.IntegrationItem:
    actor = _writer(who, user_id)
    try:
        await integrations.connect(
            user_id, integration, data.credentials, actor=actor, scopes=data.scopes
        )
    except IntegrationError as e:
        raise invalid(str(e)) from None
    connected = {c.type: c for c in await integrations.connections(user_id)}
    return item(connected[integration])


@delete("/{user_id:str}/{integration:str}", summary="Disconnect an integration")
async def disconnect_integration(
    integrations: Service, who: Who, user_id: UserId, integration: IntegrationType
) -> None:
    actor = _writer(who, user_id)
    try:
        changed = await integrations.disconnect(user_id, integration, actor=actor)
    except IntegrationError as e:
        raise invalid(str(e)) from None
    if not changed:
        raise not_found(f"user {user_id!r} has no {integration!r} integration connected")


def integration_routes(integrations: Integrations, keys: Keys) -> Router:
    """The routes, to serve beside the query API (``http_app(..., routes=[...])``)."""

    def provide() -> Integrations:
        return integrations

    return Router(
        "/v1/integrations",
        route_handlers=[list_integrations, connect_integration, disconnect_integration],
        dependencies={
            "integrations": Provide(provide, sync_to_thread=False),
            "who": caller(keys),
        },
        security=[{SECURITY: []}],
        tags=["integrations"],
    )
