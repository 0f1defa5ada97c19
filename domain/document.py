"""The Document aggregate: one document of a collection, from insert to delete.

A document lives in one scope of its collection (the whole app, an owner, a user or a
session); ``owner`` is the key of that scope and never changes. ``_id`` is the document's
id within its scope; the model keeps it equal to ``doc_id`` through every update.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from turnlog.contracts.events import SCOPES
from turnlog.domain import values
from turnlog.domain.documents import apply_update
from turnlog.domain.errors import DocumentDeleted, InvalidValue


class Document(Aggregate):
    """A JSON document in a collection, changed only through recorded events."""

    class Inserted(Aggregate.Created):
        app: str
        collection: str
        scope: str
        owner: str
        doc_id: str
        document: dict[str, Any]

    class Updated(Aggregate.Event):
        collection: str
        doc_id: str
        changes: dict[str, Any]
        document: dict[str, Any]

        def apply(self, doc: Document) -> None:
            doc.document = self.document

    class Deleted(Aggregate.Event):
        collection: str
        doc_id: str

        def apply(self, doc: Document) -> None:
            doc.deleted = True

    def __init__(
        self,
        app: str,
        collection: str,
        scope: str,
        owner: str,
        doc_id: str,
        document: dict[str, Any],
    ) -> None:
        self.app = app
        self.collection = collection
        self.scope = scope
        self.owner = owner
        self.doc_id = doc_id
        self.document = document
        self.deleted = False

    @classmethod
    def insert(
        cls,
        stream_id: UUID,
        *,
        app: str,
        collection: str,
        scope: str,
        owner: str,
        document: dict[str, Any],
        at: datetime,
    ) -> Document:
        """``document`` must carry its ``_id`` (a non-empty str)."""
        values.name(app, "app name")
        values.name(collection, "collection name")
        if scope not in SCOPES:
            raise InvalidValue(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        if scope != "app":
            values.name(owner, f"{scope} id")
        if not isinstance(document, dict):
            raise InvalidValue(f"a document is a dict, not {type(document).__name__}")
        doc_id = document.get("_id")
        if not isinstance(doc_id, str):
            raise InvalidValue("a document's _id must be a str")
        values.name(doc_id, "document _id")
        plain = values.bounded_json(document, "document")
        return cls._create(
            cls.Inserted,
            id=stream_id,
            app=app,
            collection=collection,
            scope=scope,
            owner=owner,
            doc_id=doc_id,
            document=plain,
            timestamp=at,
        )

    def update(self, changes: dict[str, Any], *, at: datetime) -> None:
        """Apply ``changes`` (see ``apply_update``); ``_id`` cannot change."""
        self._check_live()
        document = values.bounded_json(apply_update(self.document, changes), "document")
        self.trigger_event(
            self.Updated,
            timestamp=at,
            collection=self.collection,
            doc_id=self.doc_id,
            changes=values.json_value(changes, "update"),
            document=document,
        )

    def delete(self, *, at: datetime) -> None:
        self._check_live()
        self.trigger_event(
            self.Deleted, timestamp=at, collection=self.collection, doc_id=self.doc_id
        )

    def _check_live(self) -> None:
        if self.deleted:
            raise DocumentDeleted(self.doc_id)
