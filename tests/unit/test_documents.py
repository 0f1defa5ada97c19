"""The query language of collections: paths, filters, updates and sorts, in pure Python."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from turnlog.domain.documents import apply_update, matches, parse_sort, validate_path
from turnlog.domain.errors import DomainError, QueryError

DOC: dict[str, Any] = {
    "_id": "d1",
    "n": 3,
    "f": 2.5,
    "s": "abc",
    "t": True,
    "z": None,
    "tags": ["x", "y"],
    "nested": {"b": {"c": "deep"}, "n": 1},
    "items": [{"name": "first"}, {"name": "second"}],
}


# -- validate_path ------------------------------------------------------------------------


def test_path_splits_on_dots() -> None:
    assert validate_path("a") == ["a"]
    assert validate_path("items.0.name") == ["items", "0", "name"]
    assert validate_path("_id") == ["_id"]
    assert validate_path("A_b-9.x-y") == ["A_b-9", "x-y"]


@pytest.mark.parametrize(
    "path",
    [
        "",
        "a'b",
        "a}b",
        "a{b",
        "a,b",
        'a"b',
        "a\\b",
        "a b",
        " a",
        "a\n",
        "a\nb",
        "a\x00",
        "$where",
        "a.$gt",
        "a..b",
        ".a",
        "a.",
        "-a",
        "a.-1",
        "é",
        "ａ",  # fullwidth a
        "٣",  # Arabic-Indic digit three
        "a;DROP",
        "a')--",
        "a" * 65,
        ".".join(["a"] * 17),
        "x" * 5000,
    ],
)
def test_path_rejects_anything_but_plain_ascii_segments(path: str) -> None:
    with pytest.raises(QueryError):
        validate_path(path)


def test_path_accepts_sixteen_segments_of_sixty_four_characters() -> None:
    path = ".".join(["a" * 64] * 16)
    assert validate_path(path) == ["a" * 64] * 16


@pytest.mark.parametrize("path", [None, 1, ["a"], b"a"])
def test_path_that_is_not_a_str_is_refused(path: Any) -> None:
    with pytest.raises(QueryError, match="must be a str"):
        validate_path(path)


def test_query_error_is_a_domain_error() -> None:
    assert issubclass(QueryError, DomainError)


# -- matches: equality ------------------------------------------------------------------


def test_no_filter_and_empty_filter_match_everything() -> None:
    assert matches(DOC, None)
    assert matches(DOC, {})
    assert matches({}, {})


def test_implicit_equality_on_top_level_and_dotted_paths() -> None:
    assert matches(DOC, {"n": 3})
    assert matches(DOC, {"nested.b.c": "deep"})
    assert not matches(DOC, {"n": 4})
    assert not matches(DOC, {"nested.b.c": "shallow"})


def test_several_entries_must_all_hold() -> None:
    assert matches(DOC, {"n": 3, "s": "abc"})
    assert not matches(DOC, {"n": 3, "s": "abd"})


def test_digit_segments_index_into_lists() -> None:
    assert matches(DOC, {"items.1.name": "second"})
    assert matches(DOC, {"tags.0": "x"})
    assert not matches(DOC, {"items.2.name": "third"})
    assert matches(DOC, {"items.2.name": {"$exists": False}})


def test_digit_segment_is_a_key_of_an_object() -> None:
    assert matches({"m": {"0": "zero"}}, {"m.0": "zero"})


def test_leading_zeros_in_an_index_name_the_same_element() -> None:
    assert matches(DOC, {"tags.01": "y"})


def test_equal_numbers_are_equal_whatever_their_type() -> None:
    assert matches({"a": 1}, {"a": 1.0})
    assert matches({"a": 1.0}, {"a": 1})
    assert matches({"a": -0.0}, {"a": 0})


def test_numbers_compare_by_their_json_decimal_value() -> None:
    big = 2**60
    assert float(big) == big  # Python's own comparison would call these equal
    assert not matches({"a": big}, {"a": float(big)})
    assert matches({"a": 1152921504606847000}, {"a": float(big)})


def test_a_bool_never_equals_a_number() -> None:
    assert not matches({"a": True}, {"a": 1})
    assert not matches({"a": 1}, {"a": True})
    assert not matches({"a": False}, {"a": 0})
    assert not matches({"a": [True]}, {"a": [1]})
    assert not matches({"a": {"k": 0}}, {"a": {"k": False}})
    assert matches({"a": True}, {"a": True})


def test_lists_and_objects_compare_deeply() -> None:
    assert matches(DOC, {"tags": ["x", "y"]})
    assert not matches(DOC, {"tags": ["y", "x"]})
    assert not matches(DOC, {"tags": ["x"]})
    assert matches(DOC, {"nested": {"n": 1, "b": {"c": "deep"}}})
    assert not matches(DOC, {"nested": {"n": 1}})
    assert matches({"a": [1, {"b": 2.0}]}, {"a": [1.0, {"b": 2}]})


def test_a_dict_without_operators_is_an_equality_on_a_whole_object() -> None:
    assert matches({"a": {}}, {"a": {}})
    assert not matches({"a": {"b": 1}}, {"a": {}})


def test_no_array_element_matching() -> None:
    assert not matches(DOC, {"tags": "x"})
    assert not matches(DOC, {"items.name": "first"})
    assert not matches({"a": [1]}, {"a": 1})


def test_null_equals_only_a_present_null() -> None:
    assert matches(DOC, {"z": None})
    assert not matches(DOC, {"missing": None})
    assert not matches(DOC, {"n": None})


def test_path_through_a_scalar_or_null_has_no_value() -> None:
    assert not matches(DOC, {"s.x": {"$exists": True}})
    assert not matches(DOC, {"z.x": {"$exists": True}})
    assert matches(DOC, {"z.x": {"$ne": 1}})


def test_eq_and_ne_are_opposites_with_missing_matching_ne() -> None:
    assert matches(DOC, {"n": {"$eq": 3}})
    assert not matches(DOC, {"n": {"$ne": 3}})
    assert matches(DOC, {"n": {"$ne": 4}})
    assert matches(DOC, {"missing": {"$ne": 3}})
    assert not matches(DOC, {"missing": {"$eq": 3}})
    assert matches(DOC, {"missing": {"$ne": None}})
    assert not matches(DOC, {"t": {"$ne": True}})


def test_operators_are_plain_json_inside_an_eq_operand() -> None:
    assert matches({"a": {"$gt": 1}}, {"a": {"$eq": {"$gt": 1}}})


# -- matches: ordering ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("$gt", 2, True),
        ("$gt", 3, False),
        ("$gte", 3, True),
        ("$gte", 3.0, True),
        ("$gte", 3.5, False),
        ("$lt", 3.5, True),
        ("$lt", 3, False),
        ("$lte", 3, True),
        ("$lte", 2.999, False),
    ],
)
def test_ordering_of_numbers(op: str, value: Any, expected: bool) -> None:
    assert matches(DOC, {"n": {op: value}}) is expected


def test_ordering_of_strings_is_by_code_point() -> None:
    assert matches({"s": "b"}, {"s": {"$gt": "a"}})
    assert matches({"s": "a"}, {"s": {"$gt": "B"}})  # "a" (97) > "B" (66)
    assert matches({"s": "é"}, {"s": {"$gt": "z"}})
    assert matches({"s": "😀"}, {"s": {"$gt": "\uffff"}})
    assert matches({"s": "ab"}, {"s": {"$gt": "a"}})
    assert matches({"s": ""}, {"s": {"$lt": "a"}})
    assert matches({"s": "abc"}, {"s": {"$gte": "abc", "$lte": "abc"}})


@pytest.mark.parametrize("op", ["$gt", "$gte", "$lt", "$lte"])
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n", "3"),  # number field, string operand
        ("s", 1),  # string field, number operand
        ("t", 0),  # bool is not a number
        ("n", True),
        ("t", False),
        ("z", None),
        ("tags", ["x"]),
        ("nested", {}),
        ("missing", 0),
        ("missing", ""),
    ],
)
def test_ordering_across_types_or_missing_is_false(op: str, field: str, value: Any) -> None:
    assert not matches(DOC, {field: {op: value}})


def test_several_operators_on_a_field_are_anded() -> None:
    assert matches(DOC, {"n": {"$gt": 1, "$lt": 5}})
    assert not matches(DOC, {"n": {"$gt": 1, "$lt": 3}})
    assert matches(DOC, {"n": {"$gte": 3, "$ne": 4, "$exists": True}})


# -- matches: $in, $nin, $exists ----------------------------------------------------------


def test_in_is_eq_any() -> None:
    assert matches(DOC, {"n": {"$in": [1, 3.0]}})
    assert matches(DOC, {"tags": {"$in": [["x", "y"], "x"]}})
    assert not matches(DOC, {"n": {"$in": [1, 2, True]}})
    assert not matches(DOC, {"n": {"$in": []}})
    assert not matches(DOC, {"missing": {"$in": [None]}})
    assert matches(DOC, {"z": {"$in": [None]}})


def test_in_accepts_a_tuple() -> None:
    assert matches(DOC, {"n": {"$in": (3,)}})


def test_nin_is_not_in_and_matches_missing() -> None:
    assert matches(DOC, {"n": {"$nin": [1, 2]}})
    assert not matches(DOC, {"n": {"$nin": [3]}})
    assert matches(DOC, {"n": {"$nin": []}})
    assert matches(DOC, {"missing": {"$nin": [None, 1]}})
    assert not matches(DOC, {"z": {"$nin": [None]}})


def test_exists_sees_null_as_a_value() -> None:
    assert matches(DOC, {"z": {"$exists": True}})
    assert not matches(DOC, {"z": {"$exists": False}})
    assert matches(DOC, {"missing": {"$exists": False}})
    assert not matches(DOC, {"missing": {"$exists": True}})
    assert matches(DOC, {"items.1": {"$exists": True}})
    assert matches(DOC, {"items.5": {"$exists": False}})


# -- matches: logic ---------------------------------------------------------------------


def test_or_needs_any_and_and_needs_all() -> None:
    assert matches(DOC, {"$or": [{"n": 1}, {"s": "abc"}]})
    assert not matches(DOC, {"$or": [{"n": 1}, {"s": "x"}]})
    assert matches(DOC, {"$and": [{"n": 3}, {"s": "abc"}]})
    assert not matches(DOC, {"$and": [{"n": 3}, {"s": "x"}]})


def test_logic_nests_and_combines_with_fields() -> None:
    nested = {
        "n": {"$gte": 3},
        "$or": [
            {"$and": [{"s": "x"}, {"t": True}]},
            {"$and": [{"f": {"$lt": 3}}, {"$or": [{"z": {"$exists": False}}, {"t": True}]}]},
        ],
    }
    assert matches(DOC, nested)
    assert not matches({**DOC, "t": False}, nested)
    assert not matches({**DOC, "n": 2}, nested)


def test_an_empty_filter_inside_a_logical_list_matches_everything() -> None:
    assert matches(DOC, {"$or": [{}]})
    assert matches(DOC, {"$and": [{}, {"n": 3}]})


# -- matches: malformed filters -----------------------------------------------------------


@pytest.mark.parametrize(
    ("filter", "message"),
    [
        ([("n", 3)], "must be a dict"),
        ("n", "must be a dict"),
        ({"name": {"$regex": "^a"}}, "unknown operator '\\$regex' at 'name'"),
        ({"$where": "1"}, "unknown operator '\\$where'"),
        ({"$nor": [{"a": 1}]}, "unknown operator '\\$nor'"),
        ({"a": {"$gt": 1, "b": 2}}, "mixed at 'a'"),
        ({"a": {"$in": 3}}, "\\$in at 'a' needs a list"),
        ({"a": {"$nin": "xy"}}, "\\$nin at 'a' needs a list"),
        ({"a": {"$exists": 1}}, "\\$exists at 'a' needs true or false"),
        ({"$and": []}, "non-empty list"),
        ({"$or": {"a": 1}}, "non-empty list"),
        ({"$or": [{"a": 1}, 3]}, "\\$or\\[1\\] must be a filter"),
        ({"$or": [{"a": {"$bad": 1}}]}, "unknown operator '\\$bad' at 'a'"),
        ({"a'b": 1}, "invalid field path"),
        ({"": 1}, "invalid field path"),
        ({1: 1}, "must be a str"),
        ({"a": float("nan")}, "not JSON-encodable"),
        ({"a": {"$gt": {1, 2}}}, "not JSON-encodable"),
        ({"a": {"$in": [b"x"]}}, "not JSON-encodable"),
        ({"a": "x\x00y"}, "U\\+0000"),
        ({"a": {"$in": [{"k\x00": 1}]}}, "U\\+0000"),
        ({"a": "\ud800"}, "lone surrogate"),
    ],
)
def test_malformed_filter_is_refused_naming_the_problem(filter: Any, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        matches(DOC, filter)


def test_malformed_filter_is_refused_even_if_the_document_would_not_be_reached() -> None:
    with pytest.raises(QueryError):
        matches({}, {"$or": [{"a": 1}, {"b": {"$regex": "x"}}]})


# -- apply_update -----------------------------------------------------------------------


def test_update_returns_a_new_document_and_leaves_the_input_alone() -> None:
    before = copy.deepcopy(DOC)
    update = {"$set": {"nested.b.c": "new", "x": {"y": [1]}}, "$push": {"tags": "z"}}
    update_before = copy.deepcopy(update)
    after = apply_update(DOC, update)
    assert DOC == before
    assert update == update_before
    assert after["nested"]["b"]["c"] == "new" and after["tags"] == ["x", "y", "z"]
    after["x"]["y"].append(2)
    assert update == update_before  # the stored value is a copy of the operand


def test_plain_dict_update_means_set() -> None:
    assert apply_update({"_id": "d", "a": 1}, {"a": 2, "b.c": 3}) == {
        "_id": "d",
        "a": 2,
        "b": {"c": 3},
    }


def test_set_creates_intermediate_objects_and_replaces_values() -> None:
    doc = {"a": {"b": 1}}
    assert apply_update(doc, {"$set": {"a.c.d": True}}) == {"a": {"b": 1, "c": {"d": True}}}
    assert apply_update(doc, {"$set": {"a": [1]}}) == {"a": [1]}
    assert apply_update(doc, {"$set": {"a.b": None}}) == {"a": {"b": None}}


def test_set_goes_through_and_replaces_existing_list_elements() -> None:
    after = apply_update(DOC, {"$set": {"items.1.name": "2nd", "tags.0": "w"}})
    assert after["items"] == [{"name": "first"}, {"name": "2nd"}]
    assert after["tags"] == ["w", "y"]


@pytest.mark.parametrize(
    "update",
    [
        {"$set": {"tags.2": "z"}},  # past the end of a list
        {"$set": {"items.x.name": 1}},  # not an index
        {"$set": {"s.x": 1}},  # through a string
        {"$set": {"z.x": 1}},  # through null
        {"$inc": {"n.x": 1}},
        {"$push": {"tags.5.x": 1}},
    ],
)
def test_set_cannot_reach_through_a_scalar_or_a_missing_list_element(
    update: dict[str, Any],
) -> None:
    with pytest.raises(QueryError, match="cannot reach"):
        apply_update(DOC, update)


def test_unset_removes_a_key_and_ignores_a_path_with_no_value() -> None:
    after = apply_update(DOC, {"$unset": {"nested.b": 1, "missing.x": "", "s.x": True}})
    assert "b" not in after["nested"] and after["s"] == "abc"
    assert apply_update({"a": 1}, {"$unset": {"b": 1}}) == {"a": 1}


def test_unset_does_not_remove_a_list_element() -> None:
    with pytest.raises(QueryError, match="list element"):
        apply_update(DOC, {"$unset": {"tags.0": 1}})


def test_inc_adds_and_starts_a_missing_field_at_the_number() -> None:
    after = apply_update(DOC, {"$inc": {"n": 2, "f": -0.5, "new": 4, "nested.x.y": 1.5}})
    assert after["n"] == 5 and isinstance(after["n"], int)
    assert after["f"] == 2.0
    assert after["new"] == 4
    assert after["nested"]["x"] == {"y": 1.5}


@pytest.mark.parametrize("field", ["s", "t", "z", "tags", "nested"])
def test_inc_of_a_field_that_is_not_a_number_is_refused(field: str) -> None:
    with pytest.raises(QueryError, match="\\$inc at"):
        apply_update(DOC, {"$inc": {field: 1}})


@pytest.mark.parametrize("amount", [True, "1", None, [1], float("inf")])
def test_inc_by_something_that_is_not_a_finite_number_is_refused(amount: Any) -> None:
    with pytest.raises(QueryError):
        apply_update(DOC, {"$inc": {"n": amount}})


def test_inc_that_overflows_a_float_is_refused() -> None:
    with pytest.raises(QueryError, match="overflows"):
        apply_update({"a": 1e308}, {"$inc": {"a": 1e308}})


def test_push_appends_and_starts_a_missing_field_as_a_list() -> None:
    after = apply_update(DOC, {"$push": {"tags": ["nested"], "new.list": {"k": 1}}})
    assert after["tags"] == ["x", "y", ["nested"]]
    assert after["new"] == {"list": [{"k": 1}]}


def test_push_onto_a_field_that_is_not_a_list_is_refused() -> None:
    with pytest.raises(QueryError, match="\\$push at 's'"):
        apply_update(DOC, {"$push": {"s": 1}})


@pytest.mark.parametrize(
    "update",
    [
        {"_id": "other"},
        {"$set": {"_id": "other"}},
        {"$unset": {"_id": 1}},
        {"$inc": {"_id.n": 1}},
        {"$push": {"_id.list": 1}},
        {"$set": {"a": 1, "_id": "d1"}},
    ],
)
def test_id_cannot_be_changed(update: dict[str, Any]) -> None:
    with pytest.raises(QueryError, match="_id cannot be changed"):
        apply_update(DOC, update)


def test_a_field_starting_with_id_is_not_id() -> None:
    assert apply_update(DOC, {"_idx": 1})["_idx"] == 1


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({}, "empty"),
        ([("$set", {"a": 1})], "must be a dict"),
        ({"$set": {"a": 1}, "b": 2}, "mixes"),
        ({"$rename": {"a": "b"}}, "unknown update operator '\\$rename'"),
        ({"$set": {}}, "non-empty dict"),
        ({"$set": [("a", 1)]}, "non-empty dict"),
        ({"$set": {"a..b": 1}}, "invalid field path"),
        ({"a'": 1}, "invalid field path"),
        ({"$set": {"a": object()}}, "not JSON-encodable"),
        ({"$set": {"a": "\x00"}}, "U\\+0000"),
        ({"$set": {"a": 1}, "$inc": {"a": 1}}, "conflicts"),
        ({"$set": {"a": 1, "a.b": 2}}, "conflicts"),
        ({"$unset": {"a.b.c": 1}, "$push": {"a.b": 1}}, "conflicts"),
    ],
)
def test_malformed_update_is_refused(update: Any, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        apply_update(DOC, update)


def test_sibling_paths_do_not_conflict() -> None:
    after = apply_update({}, {"$set": {"a.b": 1, "a.bc": 2}, "$inc": {"ab": 1}})
    assert after == {"a": {"b": 1, "bc": 2}, "ab": 1}


def test_update_result_is_plain_json_with_lists_not_tuples() -> None:
    after = apply_update({"a": 1}, {"$set": {"t": (1, (2, 3))}})
    assert after["t"] == [1, [2, 3]]


# -- parse_sort -------------------------------------------------------------------------


def test_sort_forms() -> None:
    assert parse_sort(None) == []
    assert parse_sort([]) == []
    assert parse_sort({}) == []
    assert parse_sort("a.b") == [(["a", "b"], 1)]
    assert parse_sort([("a", 1), ["b.0", -1]]) == [(["a"], 1), (["b", "0"], -1)]
    assert parse_sort({"x": -1, "y": 1}) == [(["x"], -1), (["y"], 1)]


@pytest.mark.parametrize(
    ("sort", "message"),
    [
        ({"a": 0}, "1 or -1"),
        ({"a": 2}, "1 or -1"),
        ({"a": True}, "1 or -1"),
        ({"a": 1.0}, "1 or -1"),
        ({"a": "asc"}, "1 or -1"),
        ([("a",)], "pair"),
        ([("a", 1, 2)], "pair"),
        (["a"], "pair"),
        (("a", 1), "must be a path, a list or a dict"),
        (1, "must be a path, a list or a dict"),
        ("a'b", "invalid field path"),
        ({"$natural": 1}, "invalid field path"),
        ([("a", 1), ("a", -1)], "twice"),
    ],
)
def test_malformed_sort_is_refused(sort: Any, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_sort(sort)


def test_deeply_nested_filters_are_refused_not_a_recursion_error() -> None:
    deep: dict[str, Any] = {"a": 1}
    for _ in range(1000):
        deep = {"$or": [deep]}
    with pytest.raises(QueryError, match="nest deeper"):
        matches({"a": 1}, deep)
