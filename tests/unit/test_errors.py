"""One error hierarchy: every error turnlog raises on purpose is a ``TurnlogError`` with a
stable ``code`` and a docstring; the HTTP adapter's table gives each code a status and
the NATS ingress's gives each a dead letter's reason (the reasons dead letters always
had)."""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys

import pytest

import turnlog
from turnlog.domain import values
from turnlog.domain.errors import DomainError, TurnlogError
from turnlog.services.adapters.http.errors import DEFAULT_STATUS, HTTP_STATUS, http_status
from turnlog.services.adapters.nats.ingress import DEAD_LETTER_REASONS, dead_letter_reason

LAYERS = ("turnlog.contracts", "turnlog.domain", "turnlog.projections", "turnlog.services")
SNAKE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")

# Exceptions that are not errors: signals that never leave the code that raises them.
NOT_ERRORS = {
    # a BaseException, so that a handler's ``except Exception`` cannot swallow it
    "turnlog.services.app.rerun_sandbox.Stopped",
    # between two methods of the legacy lane: its consumer is still bound elsewhere
    "turnlog.services.adapters.nats.legacy._StillBound",
    # from a partition's lane to the ownership, which lets the partition go
    "turnlog.services.adapters.nats.pull.ConsumerGone",
    # within the ingress: a message let go to come back after an earlier one of its session
    "turnlog.services.adapters.nats.in_order.HandleLater",
}

# Codes more than one class has, because they mean the same on the wire.
SHARED = {
    "unauthorized": {"Unauthorized", "AuthenticationRequired"},
    "invalid_request": {"InvalidRequest", "ParameterError"},
    "too_large": {"TooLarge", "PayloadTooLarge"},
    "unavailable": {"Unavailable", "ClientUnavailable"},
}


def _import_everything() -> None:
    for root in LAYERS:
        package = importlib.import_module(root)
        for found in pkgutil.walk_packages(package.__path__, root + "."):
            importlib.import_module(found.name)
    importlib.import_module("turnlog.testing")


def _ours(cls: type) -> bool:
    return cls.__module__.startswith("turnlog.")


def _errors() -> list[type[TurnlogError]]:
    _import_everything()
    found: list[type[TurnlogError]] = [TurnlogError]
    for cls in found:
        found.extend(sub for sub in cls.__subclasses__() if _ours(sub) and sub not in found)
    return found


ERRORS = _errors()


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def test_every_exception_turnlog_defines_is_a_turnlog_error() -> None:
    defined = {
        _name(obj)
        for name, module in list(sys.modules.items())
        if name.startswith("turnlog.")
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == name
    }
    errors = {_name(cls) for cls in ERRORS}
    assert defined - errors == NOT_ERRORS
    assert turnlog.TurnlogError is TurnlogError


@pytest.mark.parametrize("cls", ERRORS, ids=_name)
def test_each_error_has_its_own_code_and_says_when_it_is_raised(cls: type[TurnlogError]) -> None:
    assert "code" in vars(cls), "code is set on the class itself, not inherited"
    assert SNAKE.fullmatch(cls.code), cls.code
    doc = vars(cls).get("__doc__")
    assert doc and doc.strip(), "a docstring saying when it is raised"


def test_codes_are_distinct_but_where_deliberately_shared() -> None:
    by_code: dict[str, set[str]] = {}
    for cls in ERRORS:
        by_code.setdefault(cls.code, set()).add(cls.__name__)
    shared = {code: names for code, names in by_code.items() if len(names) > 1}
    assert shared == SHARED


@pytest.mark.parametrize("cls", ERRORS, ids=_name)
def test_each_code_has_an_http_status(cls: type[TurnlogError]) -> None:
    status = http_status(cls.code)
    assert 400 <= status < 600
    assert status == HTTP_STATUS.get(cls.code, DEFAULT_STATUS)


def test_the_http_table() -> None:
    codes = {cls.code for cls in ERRORS}
    assert set(HTTP_STATUS) <= codes, "no status for a code no error has"
    assert DEFAULT_STATUS == 500
    assert {code: http_status(code) for code in HTTP_STATUS} == {
        "invalid_request": 400,
        "invalid_text": 400,
        "too_deep": 400,
        "invalid_user": 400,
        "unauthorized": 401,
        "forbidden": 403,
        "not_found": 404,
        "prompt_refused": 409,
        "too_large": 413,
    }
    assert http_status("session_not_found") == 500


def _reason(cls: type[TurnlogError]) -> str:
    return dead_letter_reason(cls.__new__(cls))


def test_dead_letter_reasons_are_those_dead_letters_always_had() -> None:
    """Before codes, a refusal of the model went out as its code when it had one (the
    text policy's), else as "invalid_" and its class's name."""
    refusals = [cls for cls in ERRORS if issubclass(cls, DomainError)]
    assert len(refusals) > 20
    for cls in refusals:
        had = cls.code if cls.code in values.POLICY_CODES else "invalid_" + cls.__name__.lower()
        assert _reason(cls) == had, cls
    by_name = {cls.__name__: cls for cls in ERRORS}
    assert _reason(by_name["SessionEnded"]) == "session_ended"
    assert _reason(by_name["SessionOfAnotherApp"]) == "wrong_app"
    assert _reason(by_name["SessionNotFound"]) == "unknown_session"
    assert set(DEAD_LETTER_REASONS) <= {cls.code for cls in ERRORS}


def test_errors_keep_the_bases_callers_catch_them_by() -> None:
    from turnlog.services.adapters.nats.client import ClientError, ClientUnavailable
    from turnlog.services.app.log.errors import StoreError, Unavailable
    from turnlog.services.app.tasks.values import UnknownTask
    from turnlog.services.app.values import FileUploadTimeout
    from turnlog.services.settings import ConfigError

    assert issubclass(Unavailable, StoreError)
    assert issubclass(ClientUnavailable, ClientError) and issubclass(ClientUnavailable, Unavailable)
    assert issubclass(UnknownTask, LookupError)
    assert issubclass(FileUploadTimeout, TimeoutError)
    assert issubclass(ConfigError, ValueError)
    assert issubclass(turnlog.DuplicateKey, StoreError)
