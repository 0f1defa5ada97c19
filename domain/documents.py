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

from dataclasses import dataclass
from typing import Any, TypeAlias

from turnlog.domain.document_fields import (
    MAX_PATH_CHARS,
    MAX_PATH_SEGMENTS,
    MAX_SEGMENT_CHARS,
    SEGMENT,
    compare,
    is_number,
    json_equal,
    operand,
    resolve,
    validate_path,
)
from turnlog.domain.document_updates import UPDATES, apply_update
from turnlog.domain.errors import QueryError

# Paths, values and updates are defined in document_fields and document_updates; every
# name of the query language stays importable from here.
__all__ = [
    "COMPARISONS",
    "LOGICAL",
    "MAX_NESTING",
    "MAX_PATH_CHARS",
    "MAX_PATH_SEGMENTS",
    "MAX_SEGMENT_CHARS",
    "ORDERINGS",
    "SEGMENT",
    "UPDATES",
    "Clause",
    "Condition",
    "Logical",
    "apply_update",
    "evaluate",
    "is_number",
    "json_equal",
    "matches",
    "operand",
    "parse_filter",
    "parse_sort",
    "resolve",
    "validate_path",
]

COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists")
ORDERINGS = ("$gt", "$gte", "$lt", "$lte")
LOGICAL = ("$and", "$or")


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
    order = compare(value, target) if found else None
    if order is None:
        return False
    return {"$gt": order > 0, "$gte": order >= 0, "$lt": order < 0, "$lte": order <= 0}[op]


def matches(doc: dict[str, Any], filter: dict[str, Any] | None) -> bool:
    """Whether ``doc`` is selected by ``filter`` (None or ``{}`` select every document)."""
    return evaluate(parse_filter(filter), doc)


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
