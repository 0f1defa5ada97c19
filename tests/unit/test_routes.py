"""How a request's path, query and body become a data or endpoint handler's arguments."""

from __future__ import annotations

from typing import Any

import pytest

import turnlog
from turnlog.services.sdk.routes import ParameterError, Route, Routes

CTX = turnlog.RequestContext("demo", turnlog.UserInfo(id="u1"), request_id="r1")


def endpoint(fn: Any, method: str = "POST", path: str = "/things/{thing}") -> Route:
    routes = Routes()
    routes.add_endpoint(method, path, True, fn)
    return next(iter(routes.endpoints.values()))


def test_query_strings_are_converted_to_the_annotated_types() -> None:
    def handler(
        ctx: turnlog.RequestContext,
        n: int,
        ratio: float = 1.0,
        on: bool = False,
        tags: list[str] | None = None,
    ) -> None: ...

    route = endpoint(handler, "GET", "/x")
    query = {"n": ["1", "7"], "ratio": ["0.5"], "on": ["true"], "tags": ["a", "b"], "other": ["?"]}
    assert route.bind(CTX, {}, query) == {
        "ctx": CTX,
        "n": 7,  # the last value of a single-valued parameter
        "ratio": 0.5,
        "on": True,
        "tags": ["a", "b"],
    }


def test_path_body_and_query_meet_in_the_keyword_arguments() -> None:
    def handler(thing: str, title: str, count: int = 0, **rest: Any) -> None: ...

    route = endpoint(handler)
    assert route.bind(CTX, {"thing": "t1"}, {"flag": ["x"]}, {"title": "hi", "count": 2}) == {
        "thing": "t1",
        "title": "hi",
        "count": 2,
        "flag": "x",
    }
    with pytest.raises(ParameterError, match="'title': given both in the body and the query"):
        route.bind(CTX, {"thing": "t1"}, {"title": ["b"]}, {"title": "a"})
    with pytest.raises(ParameterError, match="'title': missing"):
        route.bind(CTX, {"thing": "t1"}, {})
    with pytest.raises(ParameterError, match="'body': the JSON body must be an object"):
        route.bind(CTX, {"thing": "t1"}, {}, [1, 2])
    with pytest.raises(ParameterError, match="'count'"):
        route.bind(CTX, {"thing": "t1"}, {}, {"title": "a", "count": "many"})


def test_a_parameter_named_body_takes_the_whole_body() -> None:
    def handler(thing: str, body: list[int]) -> None: ...

    assert endpoint(handler).bind(CTX, {"thing": "t"}, {}, [1, 2]) == {"thing": "t", "body": [1, 2]}
    with pytest.raises(ParameterError, match="'body'"):
        endpoint(handler).bind(CTX, {"thing": "t"}, {}, ["x"])
