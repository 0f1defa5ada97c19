"""Collection filters and sorts compiled to SQL, against a real PostgreSQL: the rows a
compiled filter selects are exactly the documents ``matches`` selects."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import pytest

from tests.conftest import with_database
from turnlog.domain.documents import matches, parse_filter, parse_sort
from turnlog.domain.errors import QueryError
from turnlog.projections.collections_sql import compile_filter, compile_sort

STRINGS = [
    "",
    "a",
    "b",
    "B",
    "ab",
    "abc",
    "Z",
    "é",
    "e\u0301",
    "ä",
    "Ω",
    "中文",
    "😀",
    "\uffff",
    "null",
    "1",
    "true",
    "x'); DROP TABLE t; --",
]
NUMBERS = [
    0,
    1,
    -1,
    2,
    3,
    1.0,
    2.5,
    -0.5,
    0.1,
    -0.0,
    1e-7,
    1e16,
    10**16,
    2**60,
    float(2**60),
    1152921504606847000,
    10**20,
    -(2**63),
]
SUBKEYS = ["b", "c", "0", "1", "name"]
KEYS = ["a", "b", "n", "s", "null", "0", "x-y", "tags", "nested", "items"]
PATHS = [
    "a",
    "b",
    "n",
    "s",
    "null",
    "0",
    "x-y",
    "tags",
    "tags.0",
    "tags.1",
    "nested",
    "nested.b",
    "nested.b.c",
    "nested.0",
    "nested.name",
    "items.0",
    "items.0.name",
    "items.1.b",
    "a.b",
    "a.0",
    "missing",
    "missing.deeper",
]
OPERATORS = ["implicit", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists"]


def scalar(r: random.Random) -> Any:
    roll = r.random()
    if roll < 0.4:
        return r.choice(NUMBERS)
    if roll < 0.75:
        return r.choice(STRINGS)
    if roll < 0.87:
        return r.choice([True, False])
    return None


def value(r: random.Random, depth: int = 0) -> Any:
    roll = r.random()
    if depth < 2 and roll < 0.15:
        return [value(r, depth + 1) for _ in range(r.randint(0, 3))]
    if depth < 2 and roll < 0.3:
        return {k: value(r, depth + 1) for k in r.sample(SUBKEYS, r.randint(0, 3))}
    return scalar(r)


def obj(r: random.Random, depth: int) -> dict[str, Any]:
    return {k: value(r, depth) for k in r.sample(SUBKEYS, r.randint(1, 4))}


def field(r: random.Random, key: str) -> Any:
    """Mostly the shape the key suggests, so that nested paths lead somewhere."""
    if r.random() < 0.25:
        return value(r)
    if key == "tags":
        return [scalar(r) for _ in range(r.randint(0, 3))]
    if key == "items":
        return [obj(r, 2) for _ in range(r.randint(0, 3))]
    if key in ("nested", "a"):
        return {**obj(r, 1), **({"b": obj(r, 2)} if r.random() < 0.5 else {})}
    return scalar(r)


def documents(r: random.Random, count: int) -> dict[str, dict[str, Any]]:
    docs = {}
    for i in range(count):
        doc_id = f"d{i:03}"
        doc: dict[str, Any] = {"_id": doc_id}
        for key in KEYS:
            if r.random() < 0.75:
                doc[key] = field(r, key)
        docs[doc_id] = doc
    return docs


def lookup(doc: Any, path: str) -> tuple[bool, Any]:
    node = doc
    for segment in path.split("."):
        if isinstance(node, dict) and segment in node:
            node = node[segment]
        elif isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
            node = node[int(segment)]
        else:
            return False, None
    return True, node


def operand(r: random.Random, path: str, docs: list[dict[str, Any]], ordered: bool) -> Any:
    """Often a value some document has at ``path``, so that comparisons hit; for an
    ordering, mostly a number or a string."""
    found, existing = lookup(r.choice(docs), path)
    if ordered:
        if found and isinstance(existing, str | int | float) and r.random() < 0.6:
            return existing
        roll = r.random()
        return r.choice(NUMBERS) if roll < 0.45 else r.choice(STRINGS) if roll < 0.9 else value(r)
    return existing if found and r.random() < 0.7 else value(r, 1)


def condition(r: random.Random, op: str, docs: list[dict[str, Any]]) -> dict[str, Any]:
    path = r.choice(PATHS)
    ordered = op in ("$gt", "$gte", "$lt", "$lte")
    if op == "implicit":
        return {path: operand(r, path, docs, False)}
    if op == "$exists":
        return {path: {"$exists": r.choice([True, False])}}
    if op in ("$in", "$nin"):
        choices = [operand(r, path, docs, False) for _ in range(r.randint(0, 4))]
        return {path: {op: choices}}
    ops = {op: operand(r, path, docs, ordered)}
    if r.random() < 0.3:  # a second operator on the same field
        other = r.choice(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"])
        ops[other] = operand(r, path, docs, other in ("$gt", "$gte", "$lt", "$lte"))
    return {path: ops}


def random_filter(
    r: random.Random, op: str, docs: list[dict[str, Any]], depth: int = 0
) -> dict[str, Any]:
    if depth < 3 and r.random() < 0.3:
        logic = r.choice(["$and", "$or"])
        branches = [
            random_filter(r, r.choice(OPERATORS), docs, depth + 1) for _ in range(r.randint(1, 3))
        ]
        branches[0] = {**branches[0], **condition(r, op, docs)}
        found: dict[str, Any] = {logic: branches}
        if r.random() < 0.3:
            found.update(condition(r, r.choice(OPERATORS), docs))
        return found
    found = condition(r, op, docs)
    if r.random() < 0.1:
        found.update(condition(r, r.choice(OPERATORS), docs))
    return found


def operators_in(filter: Any) -> set[str]:
    if isinstance(filter, dict):
        return {k for k in filter if k.startswith("$")} | {
            op for v in filter.values() for op in operators_in(v)
        }
    if isinstance(filter, list):
        return {op for v in filter for op in operators_in(v)}
    return set()


async def create_table(conn: asyncpg.Connection, name: str, docs: list[dict[str, Any]]) -> None:
    await conn.execute(f"CREATE TEMP TABLE {name} (doc_id text PRIMARY KEY, doc jsonb NOT NULL)")
    await conn.executemany(
        f"INSERT INTO {name} (doc_id, doc) VALUES ($1, $2::jsonb)",
        [(doc["_id"], msgspec.json.encode(doc).decode()) for doc in docs],
    )


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


async def selected(conn: asyncpg.Connection, filter: dict[str, Any] | None) -> set[str]:
    params: list[Any] = ["no such doc"]  # a parameter of the caller's own comes first
    where = compile_filter(filter, params)
    rows = await conn.fetch(f"SELECT doc_id FROM t WHERE doc_id <> $1 AND {where}", *params)
    return {row["doc_id"] for row in rows}


# -- the compiled filter selects what matches selects -------------------------------------


async def test_compiled_filters_select_exactly_the_matching_documents(
    conn: asyncpg.Connection,
) -> None:
    r = random.Random(7)
    docs = documents(r, 300)
    await create_table(conn, "t", list(docs.values()))
    filters = [
        random_filter(r, OPERATORS[i % len(OPERATORS)], list(docs.values())) for i in range(60)
    ]
    filters += [
        {"null": {"$exists": True}},  # a key named null is a key, not a NULL path element
        {"nested.b": {"$exists": True}, "nested.b.c": {"$exists": False}},
        {"$or": [{"n": {"$gt": 1}}, {"n": {"$lte": "b"}}]},
        {"n": 1.0},
        {"n": float(2**60)},
        {"s": {"$gte": "é"}},
    ]
    seen = set().union(*(operators_in(f) for f in filters))
    assert seen >= {"$and", "$or", *OPERATORS[1:]}

    partial = 0
    for filter in filters:
        expected = {doc_id for doc_id, doc in docs.items() if matches(doc, filter)}
        assert await selected(conn, filter) == expected, filter
        partial += 0 < len(expected) < len(docs)
    assert partial >= len(filters) // 3  # many filters tell documents apart


async def test_json_null_is_a_value_and_a_missing_path_is_not(conn: asyncpg.Connection) -> None:
    await create_table(conn, "t", [{"_id": "null", "a": None}, {"_id": "none"}])
    assert await conn.fetchval("""SELECT doc #> '{"a"}' = 'null' FROM t WHERE doc_id = 'null'""")
    assert await conn.fetchval("""SELECT doc #> '{"a"}' IS NULL FROM t WHERE doc_id = 'none'""")
    assert await selected(conn, {"a": {"$exists": True}}) == {"null"}
    assert await selected(conn, {"a": None}) == {"null"}
    assert await selected(conn, {"a": {"$ne": None}}) == {"none"}
    assert await selected(conn, {"a": {"$nin": [None]}}) == {"none"}


async def test_empty_filter_selects_every_row(conn: asyncpg.Connection) -> None:
    await create_table(conn, "t", [{"_id": "x"}, {"_id": "y", "a": 1}])
    assert await selected(conn, None) == {"x", "y"}
    assert await selected(conn, {}) == {"x", "y"}


async def test_strings_order_by_code_point_whatever_the_database_collation(
    conn: asyncpg.Connection, database_url: str
) -> None:
    """The test databases sort by code point already (C), so this needs one with ICU."""
    name = f"turnlog_test_icu_{uuid.uuid4().hex[:12]}"
    try:
        await conn.execute(
            f'CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu'
            " ICU_LOCALE 'und' LOCALE 'C'"
        )
    except asyncpg.FeatureNotSupportedError:
        pytest.skip("this PostgreSQL is built without ICU")
    try:
        icu = await asyncpg.connect(with_database(database_url, name))
        try:
            assert await icu.fetchval("SELECT 'a' < 'B'")  # not code point order
            docs = {f"d{i}": {"_id": f"d{i}", "s": s} for i, s in enumerate(STRINGS)}
            await create_table(icu, "t", list(docs.values()))
            for op in ("$gt", "$gte", "$lt", "$lte"):
                for bound in STRINGS:
                    filter = {"s": {op: bound}}
                    expected = {i for i, doc in docs.items() if matches(doc, filter)}
                    assert await selected(icu, filter) == expected, filter
        finally:
            await icu.close()
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- hostile input ------------------------------------------------------------------------


async def test_hostile_filter_values_are_only_data(conn: asyncpg.Connection) -> None:
    await create_table(conn, "t", [{"_id": "x", "a": "x"}, {"_id": "y", "a": ["x"]}])
    hostile = "x'); DROP TABLE t; --"
    for filter in [
        {"a": hostile},
        {"a": {"$gt": "x' OR '1'='1"}},
        {"a": {"$in": [hostile, "'}"]}},
        {"a": {'"}': 1}},
        {"$or": [{"a": {"$eq": "$1"}}, {"a": {"$lte": "\\'"}}]},
    ]:
        assert await selected(conn, filter) == set()
    assert await conn.fetchval("SELECT count(*) FROM t") == 2


@pytest.mark.parametrize(
    "filter",
    [
        {"a'); DROP TABLE t; --": 1},
        {"a}": 1},
        {'a"': 1},
        {"a,b": 1},
        {"a\\": 1},
        {"$where": "1 = 1"},
        {"a": {"$where": "1 = 1"}},
        {"$or": [{"a' OR 1=1 --": 1}]},
    ],
)
def test_hostile_filter_paths_never_reach_the_sql(filter: dict[str, Any]) -> None:
    params: list[Any] = []
    with pytest.raises(QueryError):
        compile_filter(filter, params)


@pytest.mark.parametrize(
    "segments", [["a'b"], ["a}"], ["a", ""], ["a.b"], ['a"'], ["null\\"], ["é"]]
)
def test_compile_sort_refuses_segments_validate_path_would_refuse(segments: list[str]) -> None:
    with pytest.raises(QueryError):
        compile_sort([(segments, 1)])


@pytest.mark.parametrize("column", ["doc; DROP TABLE t", "Doc", "d.doc.x", "doc--", ""])
def test_column_must_be_a_plain_identifier(column: str) -> None:
    with pytest.raises(ValueError, match="column"):
        compile_filter({}, [], column=column)
    with pytest.raises(ValueError, match="column"):
        compile_sort([], column=column)


# -- the SQL text ---------------------------------------------------------------------------


def test_operands_are_numbered_after_the_callers_parameters() -> None:
    params: list[Any] = ["app", "notes"]
    sql = compile_filter({"a.b": 1, "s": {"$in": ["x", 2.5]}}, params, column="d.doc")
    assert params == ["app", "notes", "1", '["x",2.5]']
    assert sql == (
        """((d.doc #> '{"a","b"}' = $3::jsonb)"""
        """ AND (d.doc #> '{"s"}' IN (SELECT jsonb_array_elements($4::jsonb))))"""
    )


def test_empty_filters_compile_to_true_without_parameters() -> None:
    params: list[Any] = []
    assert compile_filter(None, params) == "TRUE"
    assert compile_filter({}, params) == "TRUE"
    assert params == []


def test_strings_compare_under_the_c_collation() -> None:
    params: list[Any] = []
    assert compile_filter({"s": {"$lt": "é"}}, params) == (
        """(jsonb_typeof(doc #> '{"s"}') = 'string'"""
        """ AND (doc #>> '{"s"}') COLLATE "C" < ($1::jsonb #>> '{}') COLLATE "C")"""
    )
    assert params == ['"é"']


def test_ordering_against_an_unordered_operand_is_false() -> None:
    params: list[Any] = []
    assert compile_filter({"a": {"$gt": None}}, params) == "FALSE"
    assert compile_filter({"a": {"$lt": [1]}}, params) == "FALSE"
    assert params == []


def test_compile_filter_accepts_exactly_what_parse_filter_accepts() -> None:
    bad = {"a": {"$in": 1}}
    with pytest.raises(QueryError):
        parse_filter(bad)
    with pytest.raises(QueryError):
        compile_filter(bad, [])


def test_sort_text() -> None:
    assert compile_sort([]) == "doc_id"
    assert compile_sort(parse_sort([("a.0", 1), ("b", -1)]), column="d.doc") == (
        """d.doc #> '{"a","0"}' ASC NULLS FIRST, d.doc #> '{"b"}' DESC NULLS LAST, d.doc_id"""
    )


# -- sorting ------------------------------------------------------------------------------


async def test_sort_order_is_total_and_does_not_depend_on_insertion(
    conn: asyncpg.Connection,
) -> None:
    docs = list(documents(random.Random(7), 300).values())
    await create_table(conn, "t", docs)
    await create_table(conn, "t_reversed", docs[::-1])
    order_by = compile_sort(parse_sort([("n", 1), ("s", -1)]))
    forward = [r["doc_id"] for r in await conn.fetch(f"SELECT doc_id FROM t ORDER BY {order_by}")]
    backward = [
        r["doc_id"] for r in await conn.fetch(f"SELECT doc_id FROM t_reversed ORDER BY {order_by}")
    ]
    assert forward == backward
    assert sorted(forward) == sorted(d["_id"] for d in docs)

    by_id = {d["_id"]: d for d in docs}
    no_n = [i for i in forward if "n" not in by_id[i]]
    assert forward[: len(no_n)] == no_n  # no value comes first when ascending
    neither = [i for i in no_n if "s" not in by_id[i]]
    assert no_n[-len(neither) :] == neither == sorted(neither)  # then doc_id breaks ties

    numbers = [i for i in forward if isinstance(by_id[i].get("n"), int | float)]
    numbers = [i for i in numbers if not isinstance(by_id[i]["n"], bool)]
    values = [Decimal(repr(by_id[i]["n"])) for i in numbers]
    assert values == sorted(values) and len(values) > 20

    descending = compile_sort(parse_sort({"n": -1}))
    rows = await conn.fetch(f"SELECT doc_id FROM t ORDER BY {descending}")
    assert [r["doc_id"] for r in rows][-len(no_n) :] == sorted(no_n)  # last when descending
