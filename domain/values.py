"""Rules for values the model stores: plain JSON only, and bounded sizes."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from turnlog.domain.errors import InvalidValue, NotJSONEncodable, TooLarge

MAX_TEXT_CHARS = 256 * 1024
MAX_VALUE_BYTES = 1024 * 1024
MAX_NAME_CHARS = 256

_SCALARS = (str, bool, int, type(None))


def json_value(value: Any, path: str) -> Any:
    """Return ``value`` as plain JSON (tuples become lists), or raise NotJSONEncodable.

    Checked by walking the value because msgspec would also encode datetimes, UUIDs and
    sets, which do not come back as the same type when the log is replayed.
    """
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotJSONEncodable(path, value)
        return value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotJSONEncodable(f"{path} key {key!r}", key)
            out[key] = json_value(item, f"{path}[{key!r}]")
        return out
    if isinstance(value, list | tuple):
        return [json_value(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise NotJSONEncodable(path, value)


def bounded_json(value: Any, what: str, limit: int = MAX_VALUE_BYTES) -> Any:
    """Plain-JSON ``value`` whose encoding is at most ``limit`` bytes."""
    plain = json_value(value, what)
    size = len(msgspec.json.encode(plain))
    if size > limit:
        raise TooLarge(f"{what} (encoded bytes)", size, limit)
    return plain


def bounded_text(text: str, what: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` itself, once it is known to be a str of at most ``limit`` characters."""
    if not isinstance(text, str):
        raise InvalidValue(f"{what} must be a str, not {type(text).__name__}")
    if len(text) > limit:
        raise TooLarge(f"{what} (characters)", len(text), limit)
    return text


def name(value: str, what: str) -> str:
    """A non-empty identifier (data key, block id, effect name) of bounded length."""
    if not isinstance(value, str) or not value:
        raise InvalidValue(f"{what} must be a non-empty str, got {value!r}")
    return bounded_text(value, what, MAX_NAME_CHARS)
