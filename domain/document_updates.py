"""Updates of JSON documents ($set, $unset, $inc, $push): checked, then applied to a copy."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from turnlog.domain.document_fields import (
    child,
    is_number,
    list_index,
    operand,
    resolve,
    validate_path,
)
from turnlog.domain.errors import InvalidValue, QueryError
from turnlog.domain.values import json_value

UPDATES = ("$set", "$unset", "$inc", "$push")


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
        elif isinstance(node, list) and list_index(node, segment) is not None:
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
        elif found and isinstance(parent, list) and list_index(parent, segment) is not None:
            raise QueryError(f"$unset cannot remove the list element {change.key!r}; $set it")
        return
    holder = _holder(doc, change)
    found, current = child(holder, segment)
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
