"""The Document aggregate: given events, when a command, then events or an error."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from turnlog.domain.document import Document
from turnlog.domain.errors import (
    DocumentDeleted,
    InvalidValue,
    NotJSONEncodable,
    QueryError,
    TooLarge,
)

T = datetime(2026, 6, 1, tzinfo=UTC)


def inserted(document: dict[str, Any] | None = None, scope: str = "user") -> Document:
    return Document.insert(
        uuid4(), app="a", collection="notes", scope=scope, owner="u1",
        document=document or {"_id": "n1", "n": 1}, at=T,
    )  # fmt: skip


def test_insert_records_the_document_in_its_scope() -> None:
    doc = inserted()
    (event,) = doc.collect_events()
    assert isinstance(event, Document.Inserted)
    assert (event.scope, event.owner, event.doc_id, event.document) == (
        "user",
        "u1",
        "n1",
        {"_id": "n1", "n": 1},
    )


@pytest.mark.parametrize(
    ("document", "scope", "error"),
    [
        ({"n": 1}, "user", InvalidValue),  # no _id
        ({"_id": 7}, "user", InvalidValue),  # _id not a str
        ({"_id": ""}, "user", InvalidValue),
        ({"_id": "x"}, "team", InvalidValue),  # unknown scope
        ({"_id": "x", "at": datetime.now()}, "user", NotJSONEncodable),
        ({"_id": "x", "blob": "x" * (1024 * 1024 + 1)}, "user", TooLarge),
    ],
)
def test_insert_refuses_bad_documents(document: dict[str, Any], scope: str, error: type) -> None:
    with pytest.raises(error):
        inserted(document, scope)


def test_update_records_the_changes_and_the_document_after_them() -> None:
    doc = inserted()
    doc.update({"$inc": {"n": 2}, "$set": {"tag": "x"}}, at=T)
    event = doc.collect_events()[-1]
    assert isinstance(event, Document.Updated)
    assert event.changes == {"$inc": {"n": 2}, "$set": {"tag": "x"}}
    assert event.document == doc.document == {"_id": "n1", "n": 3, "tag": "x"}


def test_the_id_cannot_change() -> None:
    with pytest.raises(QueryError, match="_id"):
        inserted().update({"_id": "other"}, at=T)


def test_nothing_after_delete() -> None:
    doc = inserted()
    doc.delete(at=T)
    with pytest.raises(DocumentDeleted):
        doc.update({"n": 5}, at=T)
    with pytest.raises(DocumentDeleted):
        doc.delete(at=T)
    assert [type(e).__name__ for e in doc.collect_events()] == ["Inserted", "Deleted"]
