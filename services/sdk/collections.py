"""Collections: durable application data, as JSON documents, scoped to the whole app, an
owner (the user's org, or the user), a user or a session.

``notes = app.collection("notes", scope="user")`` declares one; ``session.db.notes`` (or
``notes`` itself inside a handler) reads and writes the current user's documents. In a
data or endpoint handler the caller (a ``RequestContext``) plays the session's part. The
scope is applied by turnlog to every statement: no filter or document can reach another
scope's documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from turnlog.contracts.events import SCOPES
from turnlog.domain.documents import validate_path
from turnlog.domain.errors import TurnlogError
from turnlog.services.app import context
from turnlog.services.app.collections import Documents, Place
from turnlog.services.app.context import Runtime
from turnlog.services.app.mapping import Metadata
from turnlog.services.sdk.context import current_caller

if TYPE_CHECKING:
    from turnlog.services.app.sessions.live import RecordedEffects
    from turnlog.services.sdk.types import UserInfo


class CollectionError(TurnlogError):
    """Raised when a collection is declared wrongly, or used where it cannot resolve
    its scope (a user-scoped collection with no session) or its store (app not served)."""

    code = "collection_error"


class Caller(Protocol):
    """Whom a collection resolves its scope for: a handler's ``Session``, or the
    ``RequestContext`` of a data or endpoint handler."""

    _runtime: Runtime

    @property
    def user(self) -> UserInfo | None: ...

    def _replaying(self) -> RecordedEffects | None: ...

    def _meta(self) -> Metadata: ...

    def _owner(self, scope: str, collection: str) -> str:
        """The owner key of ``scope`` for this caller; raises when it has none."""
        ...


class HasCollections:
    """What every caller kind shares: ``db``, the app's collections as this caller sees
    them, and no re-run unless it says otherwise (a ``Session`` in a re-run does)."""

    _collections: dict[str, Collection]
    _runtime: Runtime

    @property
    def db(self) -> Database:
        """The app's collections, scoped to this caller's user, owner or session."""
        return Database(self._collections, self)  # type: ignore[arg-type]

    def _replaying(self) -> RecordedEffects | None:
        return None


class Collection:
    """A reference to one collection of an app, bound to a caller (a session or a
    request) or to the current one."""

    def __init__(
        self,
        app_name: str,
        name: str,
        scope: str,
        indexes: Sequence[str | Sequence[str]],
        session: Caller | None = None,
    ) -> None:
        if scope not in SCOPES:
            raise CollectionError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        if not name.isidentifier():
            raise CollectionError(f"a collection name is an identifier, not {name!r}")
        self.app_name, self.name, self.scope = app_name, name, scope
        self.indexes = [[i] if isinstance(i, str) else list(i) for i in indexes]
        for fields in self.indexes:
            for field in fields:
                validate_path(field)
        self._session = session

    def bind(self, session: Caller) -> Collection:
        """This collection as seen from ``session`` (or a request)."""
        return Collection(self.app_name, self.name, self.scope, self.indexes, session)

    async def insert_one(self, document: dict[str, Any]) -> str:
        """Insert ``document``; returns its ``_id`` (made when it has none)."""
        return (await self.insert_many([document]))[0]

    async def insert_many(self, documents: Sequence[dict[str, Any]]) -> list[str]:
        store, place, meta = await self._resolve()
        return await store.insert(place, list(documents), meta, user=self._writer())

    async def find(
        self,
        filter: dict[str, Any] | None = None,
        limit: int = 0,
        skip: int = 0,
        sort: Any = None,
    ) -> list[dict[str, Any]]:
        """Matching documents (``limit`` 0: all), ordered by ``sort`` then ``_id``."""
        store, place, _ = await self._resolve()
        return await store.find(place, filter, limit=limit, skip=skip, sort=sort)

    async def find_one(
        self, filter: dict[str, Any] | None = None, sort: Any = None
    ) -> dict[str, Any] | None:
        found = await self.find(filter, limit=1, sort=sort)
        return found[0] if found else None

    async def count(self, filter: dict[str, Any] | None = None) -> int:
        store, place, _ = await self._resolve()
        return await store.count(place, filter)

    async def update_one(self, filter: dict[str, Any] | None, update: dict[str, Any]) -> int:
        """Change the first matching document: a plain dict is ``$set``; also ``$set``,
        ``$unset``, ``$inc``, ``$push``. Returns how many changed (0 or 1)."""
        store, place, meta = await self._resolve()
        return await store.update_one(place, filter, update, meta, user=self._writer())

    async def delete_one(self, filter: dict[str, Any] | None) -> int:
        store, place, meta = await self._resolve()
        return await store.delete(place, filter, meta, many=False)

    async def delete_many(self, filter: dict[str, Any] | None) -> int:
        store, place, meta = await self._resolve()
        return await store.delete(place, filter, meta, many=True)

    def _writer(self) -> str | None:
        """Whose personal data a write is: the user of the session writing it (documents
        written outside any session are the app's own)."""
        caller = self._caller()
        user = caller.user if caller is not None else None
        return user.id if user is not None else None

    def _caller(self) -> Caller | None:
        return self._session if self._session is not None else current_caller()

    async def _resolve(self) -> tuple[Documents, Place, Metadata]:
        session = self._caller()
        replaying = session._replaying() if session is not None else None
        if replaying is not None:
            raise replaying.refuse(f"collection {self.name!r} (session.db)")
        if session is None and self.scope != "app":
            raise CollectionError(
                f"collection {self.name!r} is {self.scope}-scoped: use it in a handler "
                "(session.db), a data or endpoint handler, or where current_session() is set"
            )
        runtime = session._runtime if session is not None else context.runtime.get()
        store = runtime.documents if runtime is not None else None
        if store is None:
            raise CollectionError(
                f"collection {self.name!r} is only usable while turnlog serves app "
                f"{self.app_name!r}"
            )
        await store.prepare(self.app_name, self.name, self.indexes)
        owner = session._owner(self.scope, self.name) if session is not None else ""
        meta = session._meta() if session is not None else Metadata(actor=f"app:{self.app_name}")
        return store, Place(self.app_name, self.name, self.scope, owner), meta


class Database:
    """``session.db`` (or ``ctx.db``): the app's collections, seen from one session or
    request."""

    def __init__(self, collections: dict[str, Collection], session: Caller) -> None:
        self._collections, self._session = collections, session

    def __getattr__(self, name: str) -> Collection:
        collection = self._collections.get(name)
        if collection is None:
            known = ", ".join(sorted(self._collections)) or "none"
            raise AttributeError(
                f"no collection {name!r}: declare it with app.collection({name!r}, scope=...)"
                f" (declared: {known})"
            )
        return collection.bind(self._session)

    def __getitem__(self, name: str) -> Collection:
        return self.__getattr__(name)
