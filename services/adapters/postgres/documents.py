"""Collection reads and writes on PostgreSQL.

A write appends ``document.*`` events and updates the collection view in the same
transaction, so whoever wrote reads their own write at once; the projector later applies
the same events again (idempotently) and a rebuild makes the view from the events alone.
Every statement is confined to one place (app, collection, scope owner) that the caller
computes from the session, never from the filter or the document. Documents written by a
user's session are that user's personal data, whatever their scope: they are sealed with
the writer's key (documents written outside any session are the app's, and stay plain).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from turnlog.domain.document import Document
from turnlog.domain.documents import parse_sort, validate_path
from turnlog.projections.collections import Collections
from turnlog.projections.collections_sql import compile_filter, compile_sort, field_expression
from turnlog.services.adapters.postgres.eventstore import EventStore
from turnlog.services.adapters.postgres.projector.writes import (
    Conn,
    decode,
    ensure,
    execute,
    hold,
    quote,
)
from turnlog.services.app.aggregates import AggregateStore
from turnlog.services.app.collections import DuplicateKey, Place
from turnlog.services.app.mapping import Metadata, document_from_row

_view = Collections()
_decode_doc = msgspec.json.Decoder(dict[str, Any])


class CollectionStore:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.aggregates = AggregateStore(store)
        self.schema = ""
        self._prepared: set[tuple[str, str]] = set()

    async def setup(self) -> None:
        if not self.schema:
            self.schema = await ensure(self.store.pool, [_view])

    async def prepare(self, app: str, collection: str, indexes: Sequence[Sequence[str]]) -> None:
        """The view, and ``collection``'s indexes, made once per process."""
        await self.setup()
        if (app, collection) not in self._prepared:
            for fields in indexes:
                await self.create_index(app, collection, fields)
            self._prepared.add((app, collection))

    # -- writes -------------------------------------------------------------------------

    async def insert(
        self,
        place: Place,
        documents: Sequence[dict[str, Any]],
        meta: Metadata,
        *,
        user: str | None = None,
    ) -> list[str]:
        """Insert ``documents`` (an ``_id`` is made for those without); their ids.
        ``user``: whose personal data they are (sealed with that user's key)."""
        at = datetime.now(UTC)
        docs = []
        for document in documents:
            if isinstance(document, dict) and "_id" not in document:
                document = {"_id": uuid.uuid4().hex, **document}
            docs.append(
                Document.insert(
                    uuid.uuid4(),
                    app=place.app,
                    collection=place.collection,
                    scope=place.scope,
                    owner=place.owner,
                    document=document,
                    at=at,
                )
            )
        try:
            await self._save(docs, meta, user)
        except asyncpg.UniqueViolationError as e:
            raise DuplicateKey(place.collection, _duplicate(e, docs)) from None
        return [d.doc_id for d in docs]

    async def update_one(
        self,
        place: Place,
        filter: dict[str, Any] | None,
        changes: dict[str, Any],
        meta: Metadata,
        *,
        user: str | None = None,
    ) -> int:
        """Apply ``changes`` to the first matching document (by ``_id``); 0 or 1."""
        async with self._transaction() as conn:
            rows = await self._locked(conn, place, filter, limit=1)
            for doc in rows:
                doc.update(changes, at=datetime.now(UTC))
            await self._append(conn, rows, meta, user)
        self.store.announce()
        return len(rows)

    async def delete(
        self, place: Place, filter: dict[str, Any] | None, meta: Metadata, *, many: bool
    ) -> int:
        async with self._transaction() as conn:
            rows = await self._locked(conn, place, filter, limit=None if many else 1)
            at = datetime.now(UTC)
            for doc in rows:
                doc.delete(at=at)
            await self._append(conn, rows, meta)
        self.store.announce()
        return len(rows)

    async def _save(self, docs: Sequence[Document], meta: Metadata, user: str | None) -> None:
        async with self._transaction() as conn:
            await self._append(conn, docs, meta, user)
        self.store.announce()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Conn]:
        """A transaction holding the collections projection's lock (shared): a rebuild
        swapping the view in waits for it, and it for the swap."""
        async with self.store.pool.acquire() as conn, conn.transaction():
            await hold(conn, _view.name)
            yield conn

    async def _append(
        self, conn: Conn, docs: Sequence[Document], meta: Metadata, user: str | None = None
    ) -> None:
        records = []
        for doc in docs:
            # the view gets what was written, in clear (the writer has it in hand)
            records += await self.aggregates.save(
                str(doc.id), doc, meta, user=user, holding=conn, plain=True
            )
        await execute(conn, _view.apply(decode(records)), self.schema)

    async def _locked(
        self, conn: Conn, place: Place, filter: dict[str, Any] | None, limit: int | None
    ) -> list[Document]:
        params: list[Any] = [place.app, place.collection, place.owner]
        where = compile_filter(filter, params)
        sql = (
            "SELECT stream_id, version, doc_id, doc, created_at, updated_at"
            f" FROM {quote(self.schema)}.turnlog_documents"
            " WHERE app = $1 AND collection = $2 AND owner = $3 AND NOT deleted"
            f" AND ({where}) ORDER BY doc_id"
            + (f" LIMIT {int(limit)}" if limit else "")
            + " FOR UPDATE"
        )
        return [
            document_from_row(
                r[0], r[1], app=place.app, collection=place.collection, scope=place.scope,
                owner=place.owner, doc_id=r[2], document=_decode_doc.decode(r[3]),
                created_at=r[4], updated_at=r[5],
            )
            for r in await conn.fetch(sql, *params)
        ]  # fmt: skip

    # -- reads --------------------------------------------------------------------------

    async def find(
        self,
        place: Place,
        filter: dict[str, Any] | None = None,
        *,
        limit: int = 0,
        skip: int = 0,
        sort: Any = None,
    ) -> list[dict[str, Any]]:
        params: list[Any] = [place.app, place.collection, place.owner]
        where = compile_filter(filter, params)
        order = compile_sort(parse_sort(sort))
        sql = (
            f"SELECT doc FROM {quote(self.schema)}.turnlog_documents"
            " WHERE app = $1 AND collection = $2 AND owner = $3 AND NOT deleted"
            f" AND ({where}) ORDER BY {order}"
        )
        if limit:
            params.append(int(limit))
            sql += f" LIMIT ${len(params)}"
        if skip:
            params.append(int(skip))
            sql += f" OFFSET ${len(params)}"
        rows = await self.store.pool.fetch(sql, *params)
        return [_decode_doc.decode(r[0]) for r in rows]

    async def count(self, place: Place, filter: dict[str, Any] | None = None) -> int:
        params: list[Any] = [place.app, place.collection, place.owner]
        where = compile_filter(filter, params)
        return int(
            await self.store.pool.fetchval(
                f"SELECT count(*) FROM {quote(self.schema)}.turnlog_documents"
                f" WHERE app = $1 AND collection = $2 AND owner = $3 AND NOT deleted"
                f" AND ({where})",
                *params,
            )
        )

    async def create_index(self, app: str, collection: str, fields: Sequence[str]) -> None:
        """An index on ``fields`` of one collection's documents (all its scopes)."""
        exprs = ", ".join(field_expression(validate_path(f)) for f in fields)
        digest = uuid.uuid5(uuid.NAMESPACE_OID, f"{app}\0{collection}\0{fields}").hex[:16]
        # Not partial on app and collection: queries pass those as parameters, and a
        # generic plan could not prove such a predicate. doc_id last: equality on the
        # fields then yields rows in the default order (by _id), no sort needed.
        await self.store.pool.execute(
            f"CREATE INDEX IF NOT EXISTS turnlog_documents_{digest}"
            f" ON {quote(self.schema)}.turnlog_documents (app, collection, owner, {exprs}, doc_id)"
            " WHERE NOT deleted"
        )


def _duplicate(error: asyncpg.UniqueViolationError, docs: Sequence[Document]) -> str:
    detail = str(getattr(error, "detail", "") or "")
    for doc in docs:
        if f"{doc.doc_id})" in detail:
            return doc.doc_id
    return docs[0].doc_id if len(docs) == 1 else "(one of them)"
