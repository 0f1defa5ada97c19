"""The query language of collections: filters, updates and sorts over JSON documents.

A small, MongoDB-like language with simpler and stricter rules. This module is the
reference: ``matches`` says which documents a filter selects, and
``turnlog.projections.collections_sql`` compiles the same filter to PostgreSQL with
exactly the same meaning.

Field paths are dotted (``"a.b"``, ``"items.0.name"``). A segment of digits indexes into a
list; any other segment looks up a key of an object. A path that leads nowhere (a missing
key, an index past the end, a step through a scalar) has *no value*.

Filters::

    {"a": 1, "b.c": "x"}                   implicit $eq, every entry must hold
    {"a": {"$gt": 1, "$lte": 9}}           several operators on one field: all must hold
    {"$or": [{...}, {...}], "$and": [...]} logical, at the top or nested in $and/$or

- ``$eq v``: the field has a value and it equals ``v`` as JSON: numbers by numeric value
  (``1 == 1.0``), never a bool equal to a number, lists and objects deeply.
- ``$ne v``: not ``$eq v``, so a field with no value matches.
- ``$gt $gte $lt $lte v``: the field has a value, and both it and ``v`` are numbers (bools
  are not numbers) or both are strings (compared by Unicode code point); otherwise false.
- ``$in [v, ...]``: ``$eq`` one of them; ``$nin [...]``: not ``$in``.
- ``$exists true|false``: whether the field has a value (a JSON null is a value).

There is no array-element magic: ``{"tags": "x"}`` does not match ``{"tags": ["x"]}``.

Numbers are compared by the exact decimal value of their JSON text (a float by its
shortest round-trip form, as msgspec and ``repr`` write it), which is how PostgreSQL
compares jsonb numbers: ``2**60`` and ``float(2**60)`` (``1.152921504606847e18``) differ.
Operand strings may not contain U+0000 or lone surrogates, which jsonb cannot hold.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeAlias

from turnlog.domain.errors import InvalidValue, NotJSONEncodable, QueryError
from turnlog.domain.values import json_value

MAX_PATH_SEGMENTS = 16
MAX_SEGMENT_CHARS = 64
MAX_PATH_CHARS = MAX_PATH_SEGMENTS * (MAX_SEGMENT_CHARS + 1) - 1

# Path segments end up inlined in SQL (as elements of a text-array literal), so this
# pattern is a security boundary: ASCII letters, digits, "_" and "-" only, never a quote,
# brace, comma, backslash, dot, space or "$". Always used with fullmatch.
SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")

COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists")
ORDERINGS = ("$gt", "$gte", "$lt", "$lte")
LOGICAL = ("$and", "$or")
UPDATES = ("$set", "$unset", "$inc", "$push")


@dataclass(frozen=True, slots=True)
class Condition:
    """One test of one field: ``path`` ``op`` ``operand`` (an operator of COMPARISONS)."""

    path: tuple[str, ...]
    op: str
    operand: Any


@dataclass(frozen=True, slots=True)
class Logical:
    """``$and`` (all of ``clauses``; true when there are none) or ``$or`` (any of them)."""

    op: str
    clauses: tuple[Clause, ...]


Clause: TypeAlias = Condition | Logical


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


def _index(node: list[Any], segment: str) -> int | None:
    """The position ``segment`` names in the list ``node``, if it is digits and in range."""
    if segment.isascii() and segment.isdigit():
        index = int(segment)
        if index < len(node):
            return index
    return None


def _child(node: Any, segment: str) -> tuple[bool, Any]:
    """(True, value) for the value ``segment`` leads to from ``node``, else (False, None)."""
    if isinstance(node, dict):
        if segment in node:
            return True, node[segment]
    elif isinstance(node, list):
        index = _index(node, segment)
        if index is not None:
            return True, node[index]
    return False, None


def resolve(doc: Any, path: list[str] | tuple[str, ...]) -> tuple[bool, Any]:
    """(True, value) for the value at ``path`` in ``doc``, or (False, None) for no value."""
    node = doc
    for segment in path:
        found, node = _child(node, segment)
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


def _compare(a: Any, b: Any) -> int | None:
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


# -- filters ----------------------------------------------------------------------------


def parse_filter(filter: Any) -> Logical:
    """The checked form of ``filter``: an ``$and`` of its entries (none for None/``{}``)."""
    if filter is None:
        return Logical("$and", ())
    if not isinstance(filter, dict):
        raise QueryError(f"a filter must be a dict, not {type(filter).__name__}")
    return Logical("$and", _entries(filter, 0))


MAX_NESTING = 16


def _entries(filter: dict[Any, Any], depth: int) -> tuple[Clause, ...]:
    if depth > MAX_NESTING:
        raise QueryError(f"$and/$or nest deeper than {MAX_NESTING} levels")
    clauses: list[Clause] = []
    for key, value in filter.items():
        if not isinstance(key, str):
            raise QueryError(f"a filter key must be a str, not {type(key).__name__}")
        if key.startswith("$"):
            clauses.append(_logical(key, value, depth))
        else:
            clauses.extend(_field(tuple(validate_path(key)), key, value))
    return tuple(clauses)


def _logical(op: str, value: Any, depth: int) -> Logical:
    if op not in LOGICAL:
        raise QueryError(f"unknown operator {op!r} at the top of a filter")
    if not isinstance(value, list) or not value:
        raise QueryError(f"{op} needs a non-empty list of filters")
    clauses: list[Clause] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise QueryError(f"{op}[{i}] must be a filter (a dict), not {type(item).__name__}")
        clauses.append(Logical("$and", _entries(item, depth + 1)))
    return Logical(op, tuple(clauses))


def _field(path: tuple[str, ...], key: str, value: Any) -> list[Condition]:
    """The conditions of ``key: value``: an operator dict, or else implicit ``$eq``."""
    if not isinstance(value, dict) or not any(
        isinstance(k, str) and k.startswith("$") for k in value
    ):
        return [Condition(path, "$eq", operand(value, f"the value at {key!r}"))]
    conditions = []
    for op, argument in value.items():
        if not isinstance(op, str) or not op.startswith("$"):
            raise QueryError(f"operators and plain keys are mixed at {key!r}")
        if op not in COMPARISONS:
            raise QueryError(f"unknown operator {op!r} at {key!r}")
        if op == "$exists":
            if not isinstance(argument, bool):
                raise QueryError(f"$exists at {key!r} needs true or false")
            conditions.append(Condition(path, op, argument))
        elif op in ("$in", "$nin"):
            if not isinstance(argument, list | tuple):
                raise QueryError(f"{op} at {key!r} needs a list")
            conditions.append(Condition(path, op, operand(argument, f"{op} at {key!r}")))
        else:
            conditions.append(Condition(path, op, operand(argument, f"{op} at {key!r}")))
    return conditions


def evaluate(clause: Clause, doc: Any) -> bool:
    """Whether ``doc`` satisfies the checked ``clause`` (see the module docstring)."""
    if isinstance(clause, Logical):
        if clause.op == "$and":
            return all(evaluate(c, doc) for c in clause.clauses)
        return any(evaluate(c, doc) for c in clause.clauses)
    found, value = resolve(doc, clause.path)
    op, target = clause.op, clause.operand
    if op == "$exists":
        return bool(found == target)
    if op == "$eq":
        return found and json_equal(value, target)
    if op == "$ne":
        return not (found and json_equal(value, target))
    if op == "$in":
        return found and any(json_equal(value, t) for t in target)
    if op == "$nin":
        return not (found and any(json_equal(value, t) for t in target))
    order = _compare(value, target) if found else None
    if order is None:
        return False
    return {"$gt": order > 0, "$gte": order >= 0, "$lt": order < 0, "$lte": order <= 0}[op]


def matches(doc: dict[str, Any], filter: dict[str, Any] | None) -> bool:
    """Whether ``doc`` is selected by ``filter`` (None or ``{}`` select every document)."""
    return evaluate(parse_filter(filter), doc)


# -- updates ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Change:
    op: str
    path: tuple[str, ...]
    key: str
    value: Any


def _changes(update: Any) -> list[_Change]:
    """The checked changes of ``update``, in order; QueryError for a malformed one."""
    if not isinstance(update, dict):
        raise QueryError(f"an update must be a dict, not {type(update).__name__}")
    if not update:
        raise QueryError("an update must change something; it is empty")
    operators = [k for k in update if isinstance(k, str) and k.startswith("$")]
    if operators and len(operators) != len(update):
        raise QueryError("an update mixes $-operators and plain keys; put plain keys in $set")
    body = update if operators else {"$set": update}
    changes: list[_Change] = []
    for op, fields in body.items():
        if op not in UPDATES:
            raise QueryError(f"unknown update operator {op!r}")
        if not isinstance(fields, dict) or not fields:
            raise QueryError(f"{op} needs a non-empty dict of field paths")
        for key, value in fields.items():
            path = tuple(validate_path(key))
            if path[0] == "_id":
                raise QueryError(f"_id cannot be changed ({op} at {key!r})")
            if op == "$inc" and not is_number(value):
                raise QueryError(f"$inc at {key!r} needs a number, not {_kind(value)}")
            plain = None if op == "$unset" else operand(value, f"{op} at {key!r}")
            changes.append(_Change(op, path, key, plain))
    _check_conflicts(changes)
    return changes


def _check_conflicts(changes: list[_Change]) -> None:
    """QueryError if two changes touch the same path, or one a path inside the other's."""
    ordered = sorted(changes, key=lambda c: c.path)
    for before, after in itertools.pairwise(ordered):
        if after.path[: len(before.path)] == before.path:
            raise QueryError(
                f"{before.op} at {before.key!r} conflicts with {after.op} at {after.key!r}"
            )


def _kind(value: Any) -> str:
    """The JSON type of ``value``, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if is_number(value):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _holder(doc: dict[str, Any], change: _Change) -> dict[str, Any] | list[Any]:
    """The object or list that holds the last segment of ``change.path``, creating missing
    objects on the way; a list holds it only at an existing index."""
    node: Any = doc
    for depth, segment in enumerate(change.path):
        last = depth == len(change.path) - 1
        if isinstance(node, dict) and (last or segment in node):
            if last:
                return node
            node = node[segment]
        elif isinstance(node, dict):
            node = node.setdefault(segment, {})
        elif isinstance(node, list) and _index(node, segment) is not None:
            if last:
                return node
            node = node[int(segment)]
        else:
            where = ".".join(change.path[:depth]) or "the document"
            what = "an array without that index" if isinstance(node, list) else _kind(node)
            raise QueryError(f"{change.op} cannot reach {change.key!r}: {where!r} is {what}")
    raise AssertionError("a field path has at least one segment")


def _put(holder: dict[str, Any] | list[Any], segment: str, value: Any) -> None:
    if isinstance(holder, dict):
        holder[segment] = value
    else:
        holder[int(segment)] = value


def _apply(doc: dict[str, Any], change: _Change) -> None:
    segment = change.path[-1]
    if change.op == "$unset":
        found, parent = resolve(doc, change.path[:-1])
        if found and isinstance(parent, dict):
            parent.pop(segment, None)
        elif found and isinstance(parent, list) and _index(parent, segment) is not None:
            raise QueryError(f"$unset cannot remove the list element {change.key!r}; $set it")
        return
    holder = _holder(doc, change)
    found, current = _child(holder, segment)
    if change.op == "$set" or not found:
        _put(holder, segment, [change.value] if change.op == "$push" else change.value)
    elif change.op == "$inc":
        if not is_number(current):
            raise QueryError(f"$inc at {change.key!r}: the field holds {_kind(current)}")
        total = current + change.value
        if isinstance(total, float) and not abs(total) < float("inf"):
            raise QueryError(f"$inc at {change.key!r} overflows")
        _put(holder, segment, total)
    elif isinstance(current, list):  # $push
        current.append(change.value)
    else:
        raise QueryError(f"$push at {change.key!r}: the field holds {_kind(current)}")


def apply_update(doc: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A new document: ``doc`` (left untouched) changed by ``update``.

    ``update`` is ``{"$set": {path: value}, "$unset": {path: ...}, "$inc": {path: n},
    "$push": {path: value}}`` (any of them), or a dict without ``$`` keys, which means
    ``{"$set": update}``. ``$set``, ``$inc`` and ``$push`` create missing objects along the
    path and may go through (or replace) an existing list element, never append one.
    ``$inc`` and ``$push`` start a missing field at the number and at ``[value]``.
    ``$unset`` of a path with no value does nothing. No two changes may touch the same
    path or one inside the other, and none may touch ``_id``.
    """
    changes = _changes(update)
    if not isinstance(doc, dict):
        raise InvalidValue(f"a document must be a dict, not {type(doc).__name__}")
    result: dict[str, Any] = json_value(doc, "document")  # a deep copy, checked
    for change in changes:
        _apply(result, change)
    checked: dict[str, Any] = json_value(result, "document")
    return checked


# -- sorts ------------------------------------------------------------------------------


def parse_sort(sort: Any) -> list[tuple[list[str], int]]:
    """``(segments, direction)`` pairs from ``sort``: None (no order), a path (ascending),
    a list of ``(path, direction)`` pairs or a dict ``{path: direction}``; a direction is
    1 (ascending) or -1 (descending), and a path appears once."""
    if sort is None:
        return []
    if isinstance(sort, str):
        entries: list[tuple[Any, Any]] = [(sort, 1)]
    elif isinstance(sort, dict):
        entries = list(sort.items())
    elif isinstance(sort, list):
        entries = []
        for i, entry in enumerate(sort):
            if not isinstance(entry, list | tuple) or len(entry) != 2:
                raise QueryError(f"sort entry {i} must be a (path, direction) pair")
            entries.append((entry[0], entry[1]))
    else:
        raise QueryError(f"a sort must be a path, a list or a dict, not {type(sort).__name__}")
    spec: list[tuple[list[str], int]] = []
    seen: set[str] = set()
    for key, direction in entries:
        path = validate_path(key)
        if type(direction) is not int or direction not in (1, -1):
            raise QueryError(f"the sort direction of {key!r} must be 1 or -1, not {direction!r}")
        if key in seen:
            raise QueryError(f"the sort names {key!r} twice")
        seen.add(key)
        spec.append((path, direction))
    return spec
