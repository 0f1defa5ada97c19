"""``RequestContext``: who calls a data or endpoint handler, and through what request."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from turnlog.services.app.context import Runtime
from turnlog.services.app.mapping import Metadata
from turnlog.services.sdk.collections import Collection, CollectionError, HasCollections
from turnlog.services.sdk.types import UserInfo

NO_INTEGRATIONS: Mapping[str, Any] = MappingProxyType({})


class AuthenticationRequired(CollectionError):
    """Raised when a request without an authenticated caller uses a user- or owner-scoped
    collection: there is nobody to scope it to (the HTTP answer is 401)."""

    code = "unauthorized"


class RequestContext(HasCollections):
    """The caller of an ``@app.data`` or ``@app.endpoint`` handler.

    ``user`` is the app user calling (None when nobody authenticated), ``authenticated``
    whether someone did, ``integrations`` the caller's connected integrations (a read-only
    mapping), ``request`` the underlying HTTP request, ``request_id`` the id its
    collection writes are correlated with. Collections used in the handler (``ctx.db.x``,
    or a declared collection itself) resolve their scope from this caller.
    """

    def __init__(
        self,
        app_name: str,
        user: UserInfo | None,
        *,
        request_id: str,
        request: Any = None,
        integrations: Mapping[str, Any] = NO_INTEGRATIONS,
        collections: dict[str, Collection] | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        self._runtime = runtime or Runtime(app_name)
        self.app_name = app_name
        self.user = user
        self.authenticated = user is not None
        self.integrations: Mapping[str, Any] = MappingProxyType(dict(integrations))
        self.request = request
        self.request_id = request_id
        self._collections = collections or {}

    def _meta(self) -> Metadata:
        """Document events written for this request: by its user (or the app itself when
        nobody authenticated), correlated with the request."""
        actor = f"user:{self.user.id}" if self.user is not None else f"app:{self.app_name}"
        return Metadata(correlation_id=self.request_id, actor=actor)

    def _owner(self, scope: str, collection: str) -> str:
        if scope == "app":
            return ""
        if scope == "session":
            raise CollectionError(
                f"collection {collection!r} is session-scoped: a data or endpoint handler "
                "has no session"
            )
        if self.user is None:
            raise AuthenticationRequired(
                f"collection {collection!r} is {scope}-scoped: it needs an authenticated caller"
            )
        return self.user.owner_id if scope == "owner" else self.user.id

    def __repr__(self) -> str:
        who = self.user.id if self.user is not None else None
        return f"RequestContext(app={self.app_name!r}, user={who!r}, id={self.request_id!r})"
