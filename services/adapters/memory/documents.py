"""Collections in memory: writes are ``document.*`` events on the log (sealed with the
writer's key, as on PostgreSQL) and a view of the live documents by place, read at once.

Filters and updates are the model's own (``domain.documents``); sorts follow jsonb's
order (no value, then null < strings < numbers < booleans < arrays < objects), strings by
code point where PostgreSQL uses the database's collation."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from turnlog.domain.document import Document
from turnlog.domain.documents import is_number, matches, parse_sort, resolve
from turnlog.services.adapters.memory.log import MemoryLog
from turnlog.services.app.aggregates import AggregateStore
from turnlog.services.app.collections import DuplicateKey, Place
from turnlog.services.app.mapping import Metadata
from turnlog.services.app.ports import Clock, system_clock

_Key = tuple[str, str, str]  # app, collection, owner


class MemoryDocuments:
    def __init__(self, log: MemoryLog, clock: Clock = system_clock) -> None:
        self.log, self.clock = log, clock
        self.aggregates = AggregateStore(log)
        self._live: dict[_Key, dict[str, Document]] = {}

    async def prepare(self, app: str, collection: str, indexes: Sequence[Sequence[str]]) -> None:
        return None  # no indexes to make

    async def insert(
        self, place: Place, documents: Sequence[dict[str, Any]], meta: Metadata, *,
        user: str | None = None,
    ) -> list[str]:  # fmt: skip
        at = self.clock()
        docs = []
        for document in documents:
            if isinstance(document, dict) and "_id" not in document:
                document = {"_id": uuid.uuid4().hex, **document}
            docs.append(
                Document.insert(
                    uuid.uuid4(), app=place.app, collection=place.collection,
                    scope=place.scope, owner=place.owner, document=document, at=at,
                )
            )  # fmt: skip
        live = self._live.setdefault(_key(place), {})
        ids = [d.doc_id for d in docs]
        for i, doc_id in enumerate(ids):
            if doc_id in live or doc_id in ids[:i]:
                raise DuplicateKey(place.collection, doc_id)
        await self._append(docs, meta, user)
        for doc in docs:
            live[doc.doc_id] = doc
        return ids

    async def update_one(
        self, place: Place, filter: dict[str, Any] | None, changes: dict[str, Any],
        meta: Metadata, *, user: str | None = None,
    ) -> int:  # fmt: skip
        found = self._matching(place, filter)[:1]
        for doc in found:
            doc.update(changes, at=self.clock())
        await self._append(found, meta, user)
        return len(found)

    async def delete(
        self, place: Place, filter: dict[str, Any] | None, meta: Metadata, *, many: bool
    ) -> int:
        found = self._matching(place, filter)
        found = found if many else found[:1]
        at = self.clock()
        for doc in found:
            doc.delete(at=at)
        await self._append(found, meta, None)
        live = self._live.get(_key(place), {})
        for doc in found:
            live.pop(doc.doc_id, None)
        return len(found)

    async def _append(self, docs: Sequence[Document], meta: Metadata, user: str | None) -> None:
        async with self.log.transaction() as tx:
            for doc in docs:
                await self.aggregates.save(str(doc.id), doc, meta, user=user, holding=tx)
        self.log.announce()

    def _matching(self, place: Place, filter: dict[str, Any] | None) -> list[Document]:
        live = self._live.get(_key(place), {})
        return [live[i] for i in sorted(live) if matches(live[i].document, filter)]

    async def find(
        self, place: Place, filter: dict[str, Any] | None = None, *, limit: int = 0,
        skip: int = 0, sort: Any = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        found = [d.document for d in self._matching(place, filter)]  # by _id
        for path, direction in reversed(parse_sort(sort)):
            found.sort(key=_by(path), reverse=direction < 0)
        found = found[skip:] if skip else found
        found = found[:limit] if limit else found
        return copy.deepcopy(found)

    async def count(self, place: Place, filter: dict[str, Any] | None = None) -> int:
        return len(self._matching(place, filter))


def _key(place: Place) -> _Key:
    return place.app, place.collection, place.owner


def _by(path: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """The sort key of ``path``: documents without it first."""

    def key(doc: dict[str, Any]) -> tuple[Any, ...]:
        found, value = resolve(doc, path)
        return (1, _order(value)) if found else (0,)

    return key


def _order(value: Any) -> tuple[Any, ...]:
    """jsonb's order of ``value``: kind first; arrays and objects by size, then items."""
    if value is None:
        return (0,)
    if isinstance(value, str):
        return (1, value)
    if isinstance(value, bool):
        return (3, value)
    if is_number(value):
        return (2, Decimal(str(value)) if isinstance(value, float) else value)
    if isinstance(value, list):
        return (4, len(value), tuple(_order(v) for v in value))
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return (5, len(value), tuple((k, _order(value[k])) for k in keys))
    if isinstance(value, datetime):
        return (1, value.isoformat())
    return (6, repr(value))
