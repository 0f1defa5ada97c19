"""Shapes of the projection query API, over HTTP and NATS request/reply alike.

Lists are pages: ``items`` and ``next_cursor`` (opaque; absent on the last page). Times
are ISO 8601 strings in UTC. Errors are ``{"code", "message"}``.
"""

from __future__ import annotations

from typing import Any

import msgspec


class SessionSummary(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    app: str
    user_id: str
    user_email: str | None
    org_id: str | None
    channel: str
    started_at: str
    ended_at: str | None
    end_reason: str | None
    message_count: int
    reply_count: int
    last_activity: str
    version: int


class SessionPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[SessionSummary]
    next_cursor: str | None = None


class HistoryItem(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    direction: str  # "in" | "out"
    kind: str  # "message" | "reply" | "notification"
    text: str
    message_id: str | None
    streamed: bool
    at: str


class HistoryPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[HistoryItem]
    next_cursor: str | None = None


class SessionData(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    data: dict[str, Any]


class BlockItem(msgspec.Struct, frozen=True, kw_only=True):
    block_id: str
    block_type: str
    payload: dict[str, Any]
    first_version: int
    version: int
    updated_at: str


class BlockList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[BlockItem]


class EventItem(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    version: int
    type: str
    schema_version: int
    recorded_at: str
    correlation_id: str | None
    causation_id: str | None
    actor: str | None
    payload: dict[str, Any]


class EventPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[EventItem]
    next_cursor: str | None = None


class FindRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A collection query. ``owner`` narrows to one scope key (read/admin keys only)."""

    app: str
    collection: str
    filter: dict[str, Any] | None = None
    owner: str | None = None
    limit: int = 50
    cursor: str | None = None


class DocumentItem(msgspec.Struct, frozen=True, kw_only=True):
    scope: str
    owner: str
    document: dict[str, Any]


class DocumentPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[DocumentItem]
    next_cursor: str | None = None


class ProjectionFailure(msgspec.Struct, frozen=True, kw_only=True):
    """A projection stopped at an event it cannot apply (the others go on): the event at
    ``position`` (``stream_id`` at ``version``, of ``event_type``), the ``error``, how
    often it failed there (``attempts``) and when last. ``turnlog projections retry
    NAME`` tries again; every projector start does too."""

    name: str
    position: int
    stream_id: str
    version: int
    event_type: str
    error: str
    attempts: int
    failed_at: str


class ProjectionStatus(msgspec.Struct, frozen=True, kw_only=True):
    """``state`` is ``ok`` or ``failed`` (then ``failure`` says where and why)."""

    name: str
    position: int
    last_position: int
    lag_events: int
    updated_at: str
    state: str = "ok"
    failure: ProjectionFailure | None = None


class ProjectionStatusList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[ProjectionStatus]


class IntegrationItem(msgspec.Struct, frozen=True, kw_only=True):
    """A connected integration; never its credentials. ``erased``: an erasure of the
    user shredded them (handlers no longer get it)."""

    type: str
    connected_at: str
    connected_by: str | None
    scopes: list[str]
    erased: bool = False


class IntegrationList(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    items: list[IntegrationItem]


class ConnectIntegrationBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``credentials``: a non-empty JSON object (``{"token": ...}``, any other fields)."""

    credentials: dict[str, Any]
    scopes: list[str] = msgspec.field(default_factory=list)


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    message: str


# -- NATS request/reply ------------------------------------------------------------------
#
# The same queries over NATS: a request to ``<prefix>.query.<name>`` (queue group
# ``turnlog-query``), with a JSON ``QueryRequest`` body. Names and their ``params``:
#
#   sessions.list        SessionsListParams   -> SessionPage
#   sessions.get         SessionParams        -> SessionSummary
#   sessions.history     HistoryParams        -> HistoryPage
#   sessions.data        SessionParams        -> SessionData
#   sessions.blocks      SessionParams        -> BlockList
#   sessions.events      EventsParams         -> EventPage
#   sessions.state       StateParams          -> SessionState (defined below)
#   collections.find     FindRequest          -> DocumentPage
#   projections.status   (none: {})           -> ProjectionStatusList
#
# The reply is a JSON ``QueryReply``: ``{"ok": <result>}`` or ``{"error": {"code",
# "message"}}`` (codes as over HTTP: invalid_request, unauthorized, forbidden, not_found,
# too_large, internal). Every request with a reply subject gets a reply.


class QueryRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    key: str | None = None
    params: dict[str, Any] = msgspec.field(default_factory=dict)


class SessionsListParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    app: str | None = None
    user: str | None = None
    channel: str | None = None
    since: str | None = None
    until: str | None = None
    limit: int = 50
    cursor: str | None = None


class SessionParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    session_id: str


class HistoryParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    session_id: str
    limit: int = 50
    cursor: str | None = None


class EventsParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    session_id: str
    from_version: int = 1
    limit: int = 100
    cursor: str | None = None


class NoParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class QueryReply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Exactly one of ``ok`` (the query's result) and ``error`` is present."""

    ok: Any = None
    error: ErrorBody | None = None


class ReplayMessage(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    direction: str  # "in" | "out"
    kind: str  # "message" | "reply" | "notification"
    text: str
    at: str


class ReplayBlock(msgspec.Struct, frozen=True, kw_only=True):
    block_id: str
    block_type: str
    payload: dict[str, Any]
    version: int


class SessionState(msgspec.Struct, kw_only=True):
    """A session as of a version, folded from its events alone (replay)."""

    session_id: str
    version: int = 0
    at: str | None = None
    app: str | None = None
    user_id: str | None = None
    ended: bool = False
    history: list[ReplayMessage] = msgspec.field(default_factory=list)
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    blocks: list[ReplayBlock] = msgspec.field(default_factory=list)


class StateParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    session_id: str
    as_of_version: int | None = None
    at: str | None = None


class RerunDivergence(msgspec.Struct, frozen=True, kw_only=True):
    """Where a re-run first differed from the record. ``event_index`` counts the turn's
    events from 0 (its message_received); ``version`` is the recorded event's version,
    None when the re-run did more than the record holds."""

    turn: int
    message_id: str
    event_index: int
    version: int | None
    expected: dict[str, Any] | None
    actual: dict[str, Any] | None
    reason: str


class RerunReport(msgspec.Struct, frozen=True, kw_only=True):
    """``turnlog replay --rerun``: ``result`` is "identical", "diverged",
    "non_deterministic" (a handler reached the outside without ``session.effect``) or
    "not_rerunnable" (it used something a re-run cannot reproduce)."""

    session_id: str
    app: str
    turns: int
    rerun: int
    skipped: int
    result: str
    divergence: RerunDivergence | None = None


class FileRef(msgspec.Struct, frozen=True, kw_only=True):
    """A file in turnlog's file store: put it in an inbound message's ``attachments`` or
    answer a ``prompt_file`` with it."""

    name: str
    content_type: str
    url: str
    size: int


class PromptAnswerBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The answer to a waiting prompt: ``file`` (from ``POST /v1/files``) for
    ``prompt_file``, or ``declined: true`` for ``prompt_integration``."""

    file: FileRef | None = None
    declined: bool = False


class PromptAnswered(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    prompt_id: str
    answer: str  # "file" | "declined"


class RuntimeHealth(msgspec.Struct, frozen=True, kw_only=True):
    """One app's runtime in a process: ``active`` while it consumes some of the app's
    messages (it owns ``partitions``; on a NATS server without partitions, it holds the
    app's claim and the others stand by), its turns in flight, and its turns per second
    over the last few seconds."""

    app: str
    active: bool
    in_flight: int = 0
    turns: int = 0
    turns_per_second: float = 0.0
    partitions: list[int] = []


class PartHealth(msgspec.Struct, frozen=True, kw_only=True):
    """One background part of a serving process: ``state`` ``running``, ``restarting``
    (it failed; it is started again after a backoff) or ``stopped``."""

    name: str
    state: str
    restarts: int = 0
    last_error: str | None = None
    since: str


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /healthz``: ``ok`` (and ``status`` ``ok``, HTTP 200) when every part of this
    process runs, the database answers and no projection has failed; otherwise
    ``status`` ``degraded`` and HTTP 503."""

    ok: bool
    status: str = "ok"
    database: str = "ok"
    parts: list[PartHealth] = []
    failed_projections: list[ProjectionFailure] = []
