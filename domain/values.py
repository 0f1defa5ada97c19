"""Rules for values the model stores: plain JSON of storable text only, and bounded sizes.

The text policy: every string turnlog stores (texts, names, keys, and the strings inside
JSON values) is Unicode text that PostgreSQL can hold as ``text`` and ``jsonb``. That
refuses exactly two things: U+0000 (NUL), which no PostgreSQL text can hold, and the
surrogate code points U+D800 to U+DFFF on their own, which are not text and have no
UTF-8 form. Everything else is stored as given: other control characters, a BOM,
right-to-left marks, combining marks, noncharacters. Texts turnlog writes itself from
what it did not choose (an error's message) are cleaned instead: each refused character
becomes U+FFFD.
"""

from __future__ import annotations

import math
import re
from typing import Any, TypeVar
from uuid import UUID

import msgspec

from turnlog.domain.errors import (
    InvalidText,
    InvalidUser,
    InvalidValue,
    NotJSONEncodable,
    TooDeep,
    TooLarge,
)

MAX_TEXT_CHARS = 256 * 1024
MAX_VALUE_BYTES = 1024 * 1024
MAX_NAME_CHARS = 256
MAX_DEPTH = 64
"""How deeply lists and objects may nest inside a stored JSON value."""

RESERVED_USER_PREFIXES = ("org:", "app:")
"""User ids from outside turnlog never start with these: ``org:<id>`` is an org's owner
key and ``app:<name>`` an app's own system user, so no user can pass for either."""

POLICY_CODES = frozenset({InvalidText.code, TooDeep.code, InvalidUser.code})
"""The codes of the text policy's refusals that every wire reports as they are (an HTTP
error's message, a dead letter's reason); any other refusal of a value (too large, not
JSON) is reported there under the wire's generic code (``invalid_request``,
``schema_violation``)."""

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SCALARS = (bool, int, type(None))


def unstorable_at(text: str) -> int | None:
    """The index of the first character of ``text`` turnlog does not store, if any."""
    if "\x00" not in text and text.isascii():
        return None
    found = _UNSTORABLE.search(text)
    return None if found is None else found.start()


def storable(text: str, what: str) -> str:
    """``text`` itself, once it holds nothing the text policy refuses; else InvalidText."""
    index = unstorable_at(text)
    if index is not None:
        raise InvalidText(what, index, text[index])
    return text


_LONE_ESCAPE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def raw_text_problem(data: bytes) -> str | None:
    """Why JSON ``data`` that failed to decode breaks the text policy, if that is why:
    bytes that are not UTF-8, or an escaped surrogate without its other half."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"not UTF-8 (byte {e.start})"
    found = _LONE_ESCAPE.search(data)
    if found is not None:
        return f"a lone surrogate ({found.group().decode()}) at byte {found.start()}"
    return None


def clean(text: str) -> str:
    """``text`` with every character the text policy refuses replaced by U+FFFD: for
    texts turnlog records from what it did not choose, such as an error's message."""
    return text if unstorable_at(text) is None else _UNSTORABLE.sub("\ufffd", text)


def json_value(value: Any, path: str, depth: int = 0) -> Any:
    """Return ``value`` as plain JSON of storable text (tuples become lists), or raise
    NotJSONEncodable, InvalidText or TooDeep.

    Checked by walking the value because msgspec would also encode datetimes, UUIDs and
    sets, which do not come back as the same type when the log is replayed.
    """
    if isinstance(value, str):
        return storable(value, path)
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotJSONEncodable(path, value)
        return value
    if depth >= MAX_DEPTH and isinstance(value, dict | list | tuple):
        raise TooDeep(path, MAX_DEPTH)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotJSONEncodable(f"{path} key {key!r}", key)
            storable(key, f"{path} key {key!r}")
            out[key] = json_value(item, f"{path}[{key!r}]", depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [json_value(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise NotJSONEncodable(path, value)


def bounded_json(value: Any, what: str, limit: int = MAX_VALUE_BYTES) -> Any:
    """Plain-JSON ``value`` whose encoding is at most ``limit`` bytes."""
    plain = json_value(value, what)
    size = len(msgspec.json.encode(plain))
    if size > limit:
        raise TooLarge(f"{what} (encoded bytes)", size, limit)
    return plain


def bounded_text(text: str, what: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` itself, once it is known to be a storable str of at most ``limit``
    characters."""
    if not isinstance(text, str):
        raise InvalidValue(f"{what} must be a str, not {type(text).__name__}")
    if len(text) > limit:
        raise TooLarge(f"{what} (characters)", len(text), limit)
    return storable(text, what)


def optional_text(text: str | None, what: str, limit: int = MAX_NAME_CHARS) -> str | None:
    """``text`` (None allowed) under ``bounded_text``'s rules."""
    return None if text is None else bounded_text(text, what, limit)


def name(value: str, what: str) -> str:
    """A non-empty identifier (data key, block id, effect name) of bounded length."""
    if not isinstance(value, str) or not value:
        raise InvalidValue(f"{what} must be a non-empty str, got {value!r}")
    return bounded_text(value, what, MAX_NAME_CHARS)


def error_text(text: str, limit: int = 4096) -> str:
    """A text turnlog records about an error: cut to ``limit`` characters, cleaned."""
    return clean(text[:limit])


def user_id(value: str, what: str = "user id") -> str:
    """A user id given from outside turnlog: a name that does not start with a reserved
    prefix (``org:``, ``app:``), so it can never equal an owner key or a system user."""
    name(value, what)
    if value.startswith(RESERVED_USER_PREFIXES):
        raise InvalidUser(
            f"{what} {value[:80]!r} starts with {value.split(':', 1)[0]}:, which turnlog"
            " reserves for owner keys (org:<id>) and apps' own users (app:<name>)"
        )
    return value


A = TypeVar("A")


def empty(cls: type[A], id: UUID) -> A:
    """An aggregate of ``cls`` with nothing recorded yet (version 0), for records whose
    stream begins with an ordinary event rather than a creation event."""
    made = object.__new__(cls)
    made.__dict__.update(
        _id=id, _version=0, _pending_events=[], _created_on=None, _modified_on=None
    )
    return made
