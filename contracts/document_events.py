"""Payloads of the events of a collection's documents: inserted, updated, deleted."""

from __future__ import annotations

from typing import Any, ClassVar

from turnlog.contracts.event_payload import EventPayload

SCOPES = ("app", "owner", "user", "session")


class DocumentInserted(EventPayload, frozen=True, kw_only=True):
    """Recorded when a document is inserted into a collection. ``owner`` is what the scope
    is keyed by: ``""`` for scope ``app``, the owner id, the user id or the session id."""

    TYPE: ClassVar[str] = "document.inserted"
    PERSONAL: ClassVar[tuple[str, ...]] = ("document",)
    app: str
    collection: str
    scope: str
    owner: str
    doc_id: str
    document: dict[str, Any]


class DocumentUpdated(EventPayload, frozen=True, kw_only=True):
    """Recorded when a document changes: the update as asked (operator form) and the
    document as it is afterwards."""

    TYPE: ClassVar[str] = "document.updated"
    PERSONAL: ClassVar[tuple[str, ...]] = ("changes", "document")
    collection: str
    doc_id: str
    changes: dict[str, Any]
    document: dict[str, Any]


class DocumentDeleted(EventPayload, frozen=True, kw_only=True):
    """Recorded when a document is deleted; nothing more is recorded on its stream."""

    TYPE: ClassVar[str] = "document.deleted"
    collection: str
    doc_id: str


DOCUMENT_PAYLOADS: tuple[type[EventPayload], ...] = (
    DocumentInserted,
    DocumentUpdated,
    DocumentDeleted,
)
