"""Types of command-line arguments: session ids, stream ids and ISO 8601 times."""

from __future__ import annotations

import argparse
from datetime import datetime
from uuid import UUID


def stream_id(text: str) -> str:
    """A session id (a UUID), or a schedule's or a task's stream id."""
    return text if text.startswith(("schedule:", "task:")) else str(session_id(text))


def session_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a session id (a UUID): {text!r}") from None


def iso_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {text!r} (e.g. 2026-11-21T10:00:00+00:00)"
        ) from None
