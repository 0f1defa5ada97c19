"""What a projection is: a pure fold from events to writes on its own tables.

A projection names its tables and their DDL, and turns a batch of events into writes.
It opens no connection: the projection runner executes the writes, in the same
transaction as the projection's new position. Table names in SQL are written
``{s}.name``; the runner fills in the schema (the live one, or a scratch schema while
rebuilding), so one projection can be built beside its live tables and swapped in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

import msgspec

from turnlog.contracts.events import EventPayload


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """An event as projections see it: its place in the log and its decoded payload
    (None for a type this version of turnlog does not know)."""

    position: int
    stream_id: str
    version: int
    type: str
    recorded_at: datetime
    correlation_id: str | None
    causation_id: str | None
    actor: str | None
    payload: EventPayload | None


class Exec(msgspec.Struct, frozen=True):
    """``sql`` run once per row of ``rows`` (executemany), in order."""

    sql: str
    rows: list[tuple[Any, ...]]


class Copy(msgspec.Struct, frozen=True):
    """Rows bulk-loaded into ``table`` (COPY), for insert-only tables."""

    table: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


Write = Exec | Copy


class Projection(Protocol):
    """A read model kept from the log."""

    name: ClassVar[str]
    tables: ClassVar[tuple[str, ...]]
    ddl: ClassVar[tuple[str, ...]]

    def apply(self, events: Sequence[Event]) -> list[Write]:
        """The writes that bring the tables from before ``events`` to after them."""
        ...


@runtime_checkable
class Erasing(Protocol):
    """A projection whose rows hold personal fields, which an erasure must reach."""

    def erase(self, events: Sequence[Event]) -> list[Write]:
        """Writes that make the rows made from ``events`` say what those events say now.
        Given at a ``user.erased`` event: ``events`` are every earlier event of the streams
        that held the user's data, read again with the user's keys destroyed."""
        ...


def jsonb(value: Any) -> str:
    """A value as the text of a jsonb parameter."""
    return msgspec.json.encode(value).decode()
