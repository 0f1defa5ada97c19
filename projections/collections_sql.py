"""Collection filters and sorts as PostgreSQL over a ``jsonb`` document column.

``compile_filter`` turns a filter of ``turnlog.domain.documents`` into a boolean SQL
expression that is TRUE for exactly the rows whose document ``matches`` the filter (and
FALSE or NULL for the others, which WHERE treats alike: the language has no negation, so
a NULL never turns into a TRUE). Every operand is a query parameter (its JSON text, cast
``::jsonb``); only field paths are inlined, as ``doc #> '{"a","b"}'``, and only from
segments that ``validate_path`` accepts (no quote, brace, comma, backslash or space can
reach the SQL). Each element is double-quoted so that a key named ``null`` stays a key.

How the semantics carry over: ``doc #> path`` is SQL NULL when the path has no value and
jsonb ``null`` for a JSON null; jsonb ``=`` compares numbers by numeric value (``1`` equals
``1.0``) and never equals a boolean to a number; ordering operators first check that the
field has the operand's type (``jsonb_typeof``), and compare strings under ``COLLATE "C"``,
that is by code point.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from turnlog.domain.documents import (
    Clause,
    Condition,
    is_number,
    parse_filter,
    validate_path,
)
from turnlog.domain.errors import QueryError

# A column reference inlined in the SQL: a plain identifier, optionally table-qualified.
_COLUMN = re.compile(r"(?:([a-z_][a-z0-9_]*)\.)?[a-z_][a-z0-9_]*")

_ORDERINGS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def _check_column(column: str) -> re.Match[str]:
    match = _COLUMN.fullmatch(column)
    if match is None:
        raise ValueError(
            f"column must be a lower-case identifier, optionally qualified: {column!r}"
        )
    return match


def _path_literal(path: list[str] | tuple[str, ...]) -> str:
    """The text-array literal of ``path``, ``'{"a","b"}'``, from allowed segments only."""
    if validate_path(".".join(path)) != list(path):
        raise QueryError(f"invalid field path segments {list(path)!r}")
    return "'{" + ",".join(f'"{segment}"' for segment in path) + "}'"


def field_expression(path: list[str], column: str = "doc") -> str:
    """The SQL expression of a field, exactly as filters write it (so that an index on
    it serves them)."""
    _check_column(column)
    return f"({column} #> {_path_literal(path)})"


def _param(params: list[Any], value: Any) -> str:
    """Append ``value``'s JSON text to ``params``; its placeholder, cast to jsonb."""
    params.append(msgspec.json.encode(value).decode())
    return f"${len(params)}::jsonb"


def compile_filter(filter: dict[str, Any] | None, params: list[Any], column: str = "doc") -> str:
    """A boolean SQL expression over the jsonb ``column`` for ``filter``.

    Operands are appended to ``params`` (after whatever the caller put there) and named
    ``$N``, N being their 1-based position in ``params``. ``None`` and ``{}`` give
    ``TRUE``. Raises QueryError for a filter ``matches`` would refuse.
    """
    _check_column(column)
    return _clause(parse_filter(filter), params, column)


def _clause(clause: Clause, params: list[Any], column: str) -> str:
    if isinstance(clause, Condition):
        return _condition(clause, params, column)
    if not clause.clauses:
        return "TRUE" if clause.op == "$and" else "FALSE"
    parts = [_clause(c, params, column) for c in clause.clauses]
    if len(parts) == 1:
        return parts[0]
    joiner = " AND " if clause.op == "$and" else " OR "
    return "(" + joiner.join(parts) + ")"


def _condition(condition: Condition, params: list[Any], column: str) -> str:
    path = _path_literal(condition.path)
    field = f"{column} #> {path}"
    op, operand = condition.op, condition.operand
    if op == "$exists":
        return f"({field} IS NOT NULL)" if operand else f"({field} IS NULL)"
    if op == "$eq":
        return f"({field} = {_param(params, operand)})"
    if op == "$ne":
        return f"({field} IS DISTINCT FROM {_param(params, operand)})"
    if op == "$in":
        return f"({field} IN (SELECT jsonb_array_elements({_param(params, operand)})))"
    if op == "$nin":
        values = f"SELECT jsonb_array_elements({_param(params, operand)})"
        return f"({field} IS NULL OR {field} NOT IN ({values}))"
    symbol = _ORDERINGS[op]
    if is_number(operand):
        return f"(jsonb_typeof({field}) = 'number' AND {field} {symbol} {_param(params, operand)})"
    if isinstance(operand, str):
        text = f'({column} #>> {path}) COLLATE "C"'
        value = f"({_param(params, operand)} #>> '{{}}') COLLATE \"C\""
        return f"(jsonb_typeof({field}) = 'string' AND {text} {symbol} {value})"
    return "FALSE"  # only numbers and strings are ordered


def compile_sort(sort_spec: list[tuple[list[str], int]], column: str = "doc") -> str:
    """An ORDER BY list for ``sort_spec`` (from ``parse_sort``), then ``doc_id``.

    Each field sorts by jsonb's order: no value first when ascending (last when
    descending), then null < strings (by the database's collation) < numbers < booleans
    < arrays < objects. ``doc_id`` (of the column's table, if it is qualified) breaks
    ties, so the order is total.
    """
    table = _check_column(column).group(1)
    keys = []
    for path, direction in sort_spec:
        if type(direction) is not int or direction not in (1, -1):
            raise QueryError(f"a sort direction must be 1 or -1, not {direction!r}")
        order = "ASC NULLS FIRST" if direction == 1 else "DESC NULLS LAST"
        keys.append(f"{column} #> {_path_literal(path)} {order}")
    keys.append(f"{table}.doc_id" if table else "doc_id")
    return ", ".join(keys)
