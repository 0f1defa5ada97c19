"""What a file prompt accepts: extensions and content types, as HTML's accept attribute."""

from __future__ import annotations

import pytest

from turnlog.contracts.events import AttachmentRef
from turnlog.services.app.sessions.prompts import accepts


@pytest.mark.parametrize(
    ("accept", "name", "content_type", "ok"),
    [
        ("", "anything.bin", "application/octet-stream", True),
        (".csv", "Export.CSV", "application/octet-stream", True),
        (".csv,text/csv", "data.txt", "text/csv; charset=utf-8", True),
        (".csv,text/csv", "photo.png", "image/png", False),
        ("image/*", "photo.png", "image/png", True),
        ("image/*", "notes.txt", "text/plain", False),
        (" .pdf , .doc ", "cv.doc", "application/msword", True),
    ],
)
def test_accept(accept: str, name: str, content_type: str, ok: bool) -> None:
    assert accepts(accept, AttachmentRef(name=name, content_type=content_type)) is ok
