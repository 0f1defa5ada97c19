"""The text policy (see ``turnlog.domain.values``) on JSON that comes in as bytes: what in
a body (HTTP, a NATS request) it refuses, checked before anything decodes it for use."""

from __future__ import annotations

import msgspec

from turnlog.domain import values
from turnlog.domain.errors import DomainError

Problem = tuple[str, str]  # code, message


def body_problem(body: bytes) -> Problem | None:
    """What in a JSON body breaks the policy; None also for a body that is not JSON at
    all (the route refuses that itself)."""
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        problem = values.raw_text_problem(body)
        return None if problem is None else ("invalid_text", f"the body holds {problem}")
    except RecursionError:
        return "too_deep", "the body nests too deeply to decode"
    except msgspec.ValidationError:
        return None
    try:
        values.json_value(decoded, "body")
    except DomainError as e:
        return (e.code if e.code in values.POLICY_CODES else "invalid_request"), str(e)
    return None
