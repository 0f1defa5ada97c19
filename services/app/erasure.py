"""What an erasure finds and does, as values shared by its two sides: where a user's data is
in the log (found on PostgreSQL), and what of it was purged from NATS."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec


@dataclass(frozen=True)
class Reach:
    """A user's data in the log. ``streams``: every stream that held it (their sessions
    included), with the app it is relayed under; ``apps``: the apps among those;
    ``files``: the file store references (``nats-object://...``) in them;
    ``sealed_events``: events sealed with their key; ``documents``: document streams
    among them; ``unsealed_events``: personal events of their sessions written before
    sealing existed."""

    user_id: str
    sessions: tuple[str, ...]
    streams: dict[str, str]  # stream id -> the app it is relayed under
    apps: tuple[str, ...]
    files: tuple[str, ...]
    sealed_events: int
    documents: int
    unsealed_events: int


class Purged(msgspec.Struct, frozen=True, kw_only=True):
    """What was deleted from NATS: messages of each stream, files of the file store.
    ``error``: what stopped the purge (running it again finishes it)."""

    events: int = 0
    inbound: int = 0
    dead_letters: int = 0
    files: int = 0
    error: str | None = None
