"""Partitioned inbound subjects. Producers publish on ``<p>.in.<app>.<session>``; from
NATS 2.10 the inbound stream stores each message as ``<p>.in.<app>.<n>.<session>``, ``n``
the session's partition, computed by the server (a subject transform), so that one
consumer per partition hands each partition to one runtime. Messages stored before the
transform existed, or on an older server, keep the 4-token form.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from nats.aio.client import Client as NATS
from nats.js.api import SubjectTransform

from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.app.partitions import PARTITIONS

log = structlog.get_logger("turnlog.ingress")

TRANSFORMS_SINCE = (2, 10)
"""The first NATS server version with stream subject transforms (and ``partition()``)."""

_FNV_OFFSET, _FNV_PRIME = 0x811C9DC5, 0x01000193


def partition_of(token: str, partitions: int = PARTITIONS) -> int:
    """The partition NATS's ``{{partition(n,i)}}`` puts a subject token in: the 32-bit
    FNV-1a hash of its bytes, modulo ``partitions``."""
    h = _FNV_OFFSET
    for byte in token.encode():
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return h % partitions


def subject_transform(subjects: Subjects) -> SubjectTransform:
    """The inbound stream's transform: the session's partition inserted before it."""
    p = subjects.prefix
    return SubjectTransform(
        src=f"{p}.in.*.*",
        dest=f"{p}.in.{{{{wildcard(1)}}}}.{{{{partition({PARTITIONS},2)}}}}.{{{{wildcard(2)}}}}",
    )


def transforms(nc: NATS) -> bool:
    """Whether the server ``nc`` is connected to can transform stream subjects."""
    version = nc.connected_server_version
    try:
        return (version.major, version.minor) >= TRANSFORMS_SINCE
    except ValueError:  # a version that is not semantic: assume an old server
        return False


def explain_unpartitioned(nc: NATS, app: str) -> None:
    """Say, once at start, why the app's messages are not shared between its runtimes."""
    v = nc.connected_server_version
    version = f"{v.major}.{v.minor}.{v.patch}" if transforms(nc) or v.major else "unknown"
    if transforms(nc):
        log.warning(
            "the inbound stream stores no partitions (it could not be given its subject"
            " transform): one runtime of the app consumes its messages at a time, the"
            " others stand by",
            app=app,
            nats_version=version,
        )
        return
    log.warning(
        "this NATS server cannot partition the inbound stream (stream subject transforms"
        " need NATS 2.10): one runtime of the app consumes its messages at a time, the"
        " others stand by and take over if it stops",
        app=app,
        nats_version=version,
    )


def partition_subject(subjects: Subjects, app: str, partition: int) -> str:
    """The subjects one partition's consumer reads: ``<p>.in.<app>.<n>.*``."""
    return f"{subjects.prefix}.in.{app}.{partition}.*"


@dataclass(frozen=True)
class InboundSubject:
    """An inbound message's subject as stored: its app, its session token (a session id
    or ``new``) and the partition in it (None in the 4-token form)."""

    app: str
    token: str
    partition: int | None = None

    @property
    def session_id(self) -> str | None:
        return self.token if self.token != "new" else None

    @property
    def misplaced(self) -> bool:
        """A partition other than the session's (a producer that published on the
        5-token form itself): no runtime may take it as the session's."""
        return self.partition is not None and self.partition != partition_of(self.token)


def parse_inbound(subject: str, prefix: str) -> InboundSubject | None:
    """``<p>.in.<app>.<session>`` or ``<p>.in.<app>.<n>.<session>`` (``n`` one of the
    partitions); None for any other subject."""
    parts = subject.split(".")
    if parts[:2] != [prefix, "in"] or len(parts) not in (4, 5) or not all(parts):
        return None
    if len(parts) == 4:
        return InboundSubject(parts[2], parts[3])
    n = parts[3]
    if not (n.isdigit() and n == str(int(n)) and int(n) < PARTITIONS):
        return None
    return InboundSubject(parts[2], parts[4], int(n))


def producer_subject(subject: str, prefix: str) -> str:
    """The subject a producer published ``subject`` on: without the partition the stream
    put in; as it is when the producer chose the partition itself (a wrong one)."""
    parsed = parse_inbound(subject, prefix)
    if parsed is None or parsed.partition is None or parsed.misplaced:
        return subject
    return f"{prefix}.in.{parsed.app}.{parsed.token}"
