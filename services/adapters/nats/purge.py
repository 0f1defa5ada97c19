"""Purging an erased user's data from NATS: the relayed events of every stream that held
it, their inbound messages and dead letters, and the files their sessions referred to.

Messages are found by subject and deleted one at a time: JetStream overwrites a deleted
message on its disk, where a purge by subject leaves the bytes in its block files.
Whatever is already gone is skipped, so purging again after an interruption finishes
the job.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import msgspec
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import APIError, NotFoundError

from turnlog.contracts.events import UserRef
from turnlog.services.adapters.nats.files import SCHEME
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.app.erasure import Purged, Reach

_ALREADY_GONE = 10057  # JetStream: deleting a message that is no longer there


class _Mentions(msgspec.Struct, frozen=True):
    """What ties an inbound message (or a dead letter's original) to a user."""

    session_id: str | None = None
    user: UserRef | None = None


class _Letter(msgspec.Struct, frozen=True):
    subject: str = ""
    session_id: str | None = None
    original: bytes = b""


_mentions = msgspec.json.Decoder(_Mentions)
_letter = msgspec.json.Decoder(_Letter)


@dataclass
class _Tally:
    events: int = 0
    inbound: int = 0
    dead_letters: int = 0
    files: int = 0


async def purge(js: JetStreamContext, subjects: Subjects, reach: Reach) -> Purged:
    """Delete ``reach``'s copies from the streams and the file store; what was deleted.
    Relayed events are found by their streams' subjects; inbound messages (few: they go
    once handled) and dead letters by reading each and matching the user or their
    sessions (a first message is on ``<app>.new``, or on a session id not yet on record)."""
    tally = _Tally()
    p, sessions = subjects.prefix, set(reach.sessions)
    try:
        for stream_id, app in reach.streams.items():
            found = await delete_all(js, subjects.stream_events, subjects.events(app, stream_id))
            tally.events += found
        theirs = _inbound_of(reach.user_id, sessions)
        tally.inbound = await delete_all(js, subjects.stream_in, f"{p}.in.>", theirs)
        letters = _letter_of(reach.user_id, sessions)
        tally.dead_letters = await delete_all(js, subjects.stream_dlq, f"{p}.dlq.>", letters)
        for url in reach.files:
            tally.files += await erase_file(js, subjects.bucket_files, url)
    except Exception as e:  # NATS away or refusing: say so; a second run goes on from here
        return Purged(**vars(tally), error=str(e) or type(e).__name__)
    return Purged(**vars(tally))


async def delete_all(
    js: JetStreamContext,
    stream: str,
    subject: str,
    match: Callable[[RawStreamMsg], bool] | None = None,
) -> int:
    """Delete every message of ``stream`` on ``subject`` (a filter) for which ``match``
    holds; how many were deleted. A stream that does not exist has none."""
    deleted = 0
    async for msg in _messages(js, stream, subject):
        if (match is None or match(msg)) and await _delete(js, stream, msg):
            deleted += 1
    return deleted


async def _messages(js: JetStreamContext, stream: str, subject: str) -> AsyncIterator[RawStreamMsg]:
    seq = 1
    while True:
        try:
            msg = await js.get_msg(stream, seq, subject=subject, next=True)
        except NotFoundError:  # no more (or no such stream)
            return
        yield msg
        seq = (msg.seq or seq) + 1


async def _delete(js: JetStreamContext, stream: str, msg: RawStreamMsg) -> bool:
    assert msg.seq is not None
    try:
        return await js.delete_msg(stream, msg.seq)
    except APIError as e:
        if e.err_code == _ALREADY_GONE:  # handled (and so dropped) since it was read
            return False
        raise


def _names(data: bytes, user_id: str, sessions: set[str]) -> bool:
    """Whether an inbound message (or a dead letter's original) names the user or one of
    their sessions."""
    try:
        found = _mentions.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    return (found.user is not None and found.user.id == user_id) or found.session_id in sessions


def _inbound_of(user_id: str, sessions: set[str]) -> Callable[[RawStreamMsg], bool]:
    def theirs(msg: RawStreamMsg) -> bool:
        on_theirs = (msg.subject or "").rsplit(".", 1)[-1] in sessions
        return on_theirs or _names(msg.data or b"", user_id, sessions)

    return theirs


def _letter_of(user_id: str, sessions: set[str]) -> Callable[[RawStreamMsg], bool]:
    """Whether a dead letter is the user's: it, its subject or its original names one of
    their sessions, or the original names them."""

    def theirs(msg: RawStreamMsg) -> bool:
        try:
            letter = _letter.decode(msg.data or b"")
        except (msgspec.DecodeError, msgspec.ValidationError):
            return False
        on_theirs = letter.subject.rsplit(".", 1)[-1] in sessions
        named = _names(letter.original, user_id, sessions)
        return letter.session_id in sessions or on_theirs or named

    return theirs


async def erase_file(js: JetStreamContext, bucket: str, url: str) -> int:
    """Delete the file ``url`` refers to, if it is in ``bucket``: its chunks, then its
    description (which holds its name), leaving no deletion marker; 1 if there was one."""
    parts = urlsplit(url)
    if parts.scheme != SCHEME or parts.netloc != bucket:
        return 0  # stored elsewhere: the app's to delete
    name = unquote(parts.path.lstrip("/"))
    stream = f"OBJ_{bucket}"
    meta = f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"
    found = 0
    async for msg in _messages(js, stream, meta):
        nuid = msgspec.json.decode(msg.data or b"{}", type=dict[str, object]).get("nuid")
        if isinstance(nuid, str) and nuid:
            await delete_all(js, stream, f"$O.{bucket}.C.{nuid}")
        found = 1
        await _delete(js, stream, msg)
    return found
