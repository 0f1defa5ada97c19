"""Fields of JSON documents: dotted paths to them, and their values as jsonb compares them."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from turnlog.domain.errors import InvalidValue, NotJSONEncodable, QueryError
from turnlog.domain.values import json_value

MAX_PATH_SEGMENTS = 16
MAX_SEGMENT_CHARS = 64
MAX_PATH_CHARS = MAX_PATH_SEGMENTS * (MAX_SEGMENT_CHARS + 1) - 1

# Path segments end up inlined in SQL (as elements of a text-array literal), so this
# pattern is a security boundary: ASCII letters, digits, "_" and "-" only, never a quote,
# brace, comma, backslash, dot, space or "$". Always used with fullmatch.
SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")


# -- paths ------------------------------------------------------------------------------


def validate_path(path: str) -> list[str]:
    """The segments of the dotted field ``path``, or QueryError if any is not allowed.

    Each segment is 1 to 64 of ``A-Z a-z 0-9 _ -`` and does not start with ``-``; a path
    has at most 16 segments.
    """
    if not isinstance(path, str):
        raise QueryError(f"a field path must be a str, not {type(path).__name__}")
    if len(path) > MAX_PATH_CHARS:
        raise QueryError(f"a field path of {len(path)} characters is too long")
    segments = path.split(".")
    if len(segments) > MAX_PATH_SEGMENTS:
        raise QueryError(
            f"field path {path!r} has {len(segments)} segments; the limit is {MAX_PATH_SEGMENTS}"
        )
    for segment in segments:
        if not SEGMENT.fullmatch(segment):
            raise QueryError(
                f"invalid field path {path!r}: segment {segment!r} must be 1 to "
                f"{MAX_SEGMENT_CHARS} of A-Z a-z 0-9 _ - and not start with -"
            )
    return segments


def list_index(node: list[Any], segment: str) -> int | None:
    """The position ``segment`` names in the list ``node``, if it is digits and in range."""
    if segment.isascii() and segment.isdigit():
        index = int(segment)
        if index < len(node):
            return index
    return None


def child(node: Any, segment: str) -> tuple[bool, Any]:
    """(True, value) for the value ``segment`` leads to from ``node``, else (False, None)."""
    if isinstance(node, dict):
        if segment in node:
            return True, node[segment]
    elif isinstance(node, list):
        index = list_index(node, segment)
        if index is not None:
            return True, node[index]
    return False, None


def resolve(doc: Any, path: list[str] | tuple[str, ...]) -> tuple[bool, Any]:
    """(True, value) for the value at ``path`` in ``doc``, or (False, None) for no value."""
    node = doc
    for segment in path:
        found, node = child(node, segment)
        if not found:
            return False, None
    return True, node


# -- JSON values ------------------------------------------------------------------------


def is_number(value: Any) -> bool:
    """Whether ``value`` is a JSON number: an int or float, and not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _decimal(number: int | float) -> Decimal:
    """The exact value of ``number``'s JSON text (a float's shortest round-trip form)."""
    return Decimal(number) if isinstance(number, int) else Decimal(repr(number))


def json_equal(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are the same JSON value, as jsonb equality decides."""
    if is_number(a) and is_number(b):
        return _decimal(a) == _decimal(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return a is None and b is None


def compare(a: Any, b: Any) -> int | None:
    """-1, 0 or 1 for two numbers or two strings (by code point); None for anything else."""
    if is_number(a) and is_number(b):
        x, y = _decimal(a), _decimal(b)
        return (x > y) - (x < y)
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    return None


def operand(value: Any, where: str) -> Any:
    """``value`` as plain JSON that jsonb can hold (a fresh copy), or QueryError."""
    try:
        return json_value(value, where)
    except (NotJSONEncodable, InvalidValue) as exc:
        raise QueryError(str(exc)) from exc
