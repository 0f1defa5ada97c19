"""The sealed payload format, sans I/O: personal fields encrypted with a user's key.

A sealed payload is the same JSON object with a leading marker naming the user, the key
generation and the sealed fields, and each of those fields replaced by the base64 text of
nonce + AES-256-GCM ciphertext of the field's JSON encoding (the user id and field name
are authenticated too, so a sealed value cannot be moved to another field or user). A
field of an object field is named ``outer.inner`` and sealed in place::

    {"_sealed":{"user":"alice","key":1,"fields":["text"]},"message_id":"m1","text":"q0F..."}

Opening restores the exact plain bytes; with the key destroyed it puts placeholders in
(``[erased]``; a document keeps only its ``_id``). Secret fields (credentials) are left
closed unless the reader asks for them: ``{"_withheld": true}`` stands in their place.
Payloads without the marker pass as they are.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from turnlog.contracts.events import ALL_PAYLOADS
from turnlog.services.app.log.errors import StoreError

MARKER = "_sealed"
QUICK = b'"_sealed"'  # no payload without this substring can be sealed
ERASED = "[erased]"
NONCE = 12
SNAPSHOT_FIELDS = ("state",)

PERSONAL: dict[str, tuple[str, ...]] = {p.TYPE: p.PERSONAL for p in ALL_PAYLOADS if p.PERSONAL}
"""Event type name -> the fields sealed with the user's key."""
SECRET: dict[str, tuple[str, ...]] = {p.TYPE: p.SECRET for p in ALL_PAYLOADS if p.SECRET}
"""Event type name -> the sealed fields opened only for a reader that asks for secrets."""
WITHHELD = {"_withheld": True}


class SealError(StoreError):
    """Raised when a sealed field cannot be opened with the key it names: the key is not
    the one it was sealed with, or the stored bytes were damaged."""

    code = "seal_error"


class Seal(msgspec.Struct, frozen=True, kw_only=True):
    """The marker: whose key (user, generation) sealed which fields."""

    user: str
    key: int
    fields: tuple[str, ...]


KeyId = tuple[str, int]
_object = msgspec.json.Decoder(dict[str, msgspec.Raw])
_seal = msgspec.json.Decoder(Seal)
_str = msgspec.json.Decoder(str)
_encode = msgspec.json.Encoder().encode


def _aad(user: str, field: str) -> bytes:
    return f"{user}\0{field}".encode()


def seal(payload: bytes, fields: tuple[str, ...], user: str, generation: int, key: AESGCM) -> bytes:
    """``payload`` (a JSON object) with ``fields`` sealed; unchanged if it has none. A
    field is a name, or ``outer.inner`` for a field of an object field."""
    plain = _object.decode(payload)
    present = tuple(f for f in fields if _has(plain, f))
    if not present:
        return payload

    def close(path: str, raw: msgspec.Raw) -> msgspec.Raw:
        nonce = os.urandom(NONCE)
        box = nonce + key.encrypt(nonce, bytes(raw), _aad(user, path))
        return msgspec.Raw(_encode(base64.b64encode(box).decode()))

    for path in present:
        _replace(plain, path, close)
    return _encode({MARKER: Seal(user=user, key=generation, fields=present), **plain})


def _has(fields: dict[str, msgspec.Raw], path: str) -> bool:
    outer, _, inner = path.partition(".")
    if outer not in fields:
        return False
    return not inner or inner in _object_or_empty(fields[outer])


def _object_or_empty(raw: msgspec.Raw) -> dict[str, msgspec.Raw]:
    return _object.decode(raw) if bytes(raw).startswith(b"{") else {}


def _replace(
    fields: dict[str, msgspec.Raw],
    path: str,
    change: Callable[[str, msgspec.Raw], msgspec.Raw],
) -> None:
    """Put ``change(path, value)`` in place of the value at ``path`` (in ``fields``)."""
    outer, _, inner = path.partition(".")
    if not inner:
        fields[outer] = change(path, fields[outer])
        return
    nested = _object.decode(fields[outer])
    nested[inner] = change(path, nested[inner])
    fields[outer] = msgspec.Raw(_encode(nested))


def parse(payload: bytes) -> tuple[Seal, dict[str, msgspec.Raw]] | None:
    """The marker and the fields of a sealed payload; None for a plain one."""
    if QUICK not in payload:
        return None
    fields = _object.decode(payload)
    marker = fields.pop(MARKER, None)
    if marker is None:
        return None
    return _seal.decode(marker), fields


def open_(
    marker: Seal,
    fields: dict[str, msgspec.Raw],
    key: AESGCM | None,
    withheld: tuple[str, ...] = (),
) -> bytes:
    """The plain payload from a parsed sealed one; ``key`` None: it was erased, so the
    sealed fields become placeholders. Fields in ``withheld`` stay closed (``WITHHELD``)."""

    def reopen(path: str, raw: msgspec.Raw) -> msgspec.Raw:
        if key is None:
            return msgspec.Raw(_encode(placeholder(path, fields)))
        if path in withheld:
            return msgspec.Raw(_encode(WITHHELD))
        box = base64.b64decode(_str.decode(raw))
        try:
            return msgspec.Raw(key.decrypt(box[:NONCE], box[NONCE:], _aad(marker.user, path)))
        except InvalidTag:
            msg = (
                f"field {path!r} sealed for user {marker.user!r} (key {marker.key}) does not"
                " open with that key: wrong key or damaged bytes"
            )
            raise SealError(msg) from None

    for path in marker.fields:
        _replace(fields, path, reopen)
    return _encode(fields)


def needle(user_id: str) -> bytes:
    """Bytes that every payload sealed for ``user_id`` (any key generation) contains and
    no other payload does: the marker always comes first, encoded the same way."""
    return b'{"_sealed":{"user":' + _encode(user_id) + b',"key":'


def placeholder(field: str, fields: Mapping[str, msgspec.Raw]) -> Any:
    """What an erased field reads as: ``"[erased]"`` for texts and values, a document
    reduced to its ``_id`` (marked ``_erased``), ``{"_erased": true}`` for changes,
    credentials and task arguments, ``null`` for an email address and a snapshot's state."""
    if field == "document":
        doc_id = _str.decode(fields["doc_id"]) if "doc_id" in fields else None
        return {"_id": doc_id, "_erased": True}
    if field in ("changes", "credentials", "kwargs"):
        return {"_erased": True}
    if field in ("state", "user.email"):
        return None
    return ERASED
