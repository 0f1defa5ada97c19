"""Collections as the application sees them: where documents live (a ``Place``), and the
``Documents`` port that reads and writes them (PostgreSQL, or memory). Every operation is
confined to one place, which the caller computes from the session or request, never from
a filter or a document."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from turnlog.services.app.log.errors import StoreError
from turnlog.services.app.mapping import Metadata


class DuplicateKey(StoreError):
    """Raised when a document is inserted with an ``_id`` its scope already holds."""

    code = "duplicate_key"

    def __init__(self, collection: str, doc_id: str) -> None:
        self.collection, self.doc_id = collection, doc_id
        super().__init__(f"collection {collection!r} already has a document with _id {doc_id!r}")


@dataclass(frozen=True)
class Place:
    """Where documents live: one scope of one collection of one app."""

    app: str
    collection: str
    scope: str
    owner: str


class Documents(Protocol):
    """Documents by place. Each write is ``document.*`` events on the log, seen at once
    by the writer's own reads. ``user``: whose personal data a write is (sealed with that
    user's key); None for the app's own."""

    async def prepare(self, app: str, collection: str, indexes: Sequence[Sequence[str]]) -> None:
        """Make ready to serve ``collection`` (its indexes), once per process."""
        ...

    async def insert(
        self, place: Place, documents: Sequence[dict[str, Any]], meta: Metadata, *,
        user: str | None = None,
    ) -> list[str]: ...  # fmt: skip

    async def update_one(
        self, place: Place, filter: dict[str, Any] | None, changes: dict[str, Any],
        meta: Metadata, *, user: str | None = None,
    ) -> int: ...  # fmt: skip

    async def delete(
        self, place: Place, filter: dict[str, Any] | None, meta: Metadata, *, many: bool
    ) -> int: ...

    async def find(
        self, place: Place, filter: dict[str, Any] | None = None, *, limit: int = 0,
        skip: int = 0, sort: Any = None,
    ) -> list[dict[str, Any]]: ...  # fmt: skip

    async def count(self, place: Place, filter: dict[str, Any] | None = None) -> int: ...
