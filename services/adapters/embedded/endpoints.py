"""Which PostgreSQL and NATS to use: external URLs from settings, or the embedded servers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from turnlog.services.adapters.embedded.servers import EmbeddedInfra
from turnlog.services.settings import Settings


@dataclass(frozen=True)
class Endpoints:
    database_url: str
    nats_url: str
    database_embedded: bool
    nats_embedded: bool


@contextmanager
def endpoints(settings: Settings, *, nats: bool = True) -> Iterator[Endpoints]:
    """The servers to talk to, held for the duration of the block.

    Embedded servers are started on demand, shared with other processes on the same
    home directory, and stopped when the last user releases them (unless pinned).
    """
    want_pg = settings.database_url is None
    want_nats = nats and settings.nats_url is None
    if not (want_pg or want_nats):
        yield Endpoints(settings.database_url or "", settings.nats_url or "", False, False)
        return
    infra = EmbeddedInfra(settings.home)
    status = infra.acquire(postgres=want_pg, nats=want_nats)
    try:
        yield Endpoints(
            database_url=settings.database_url or (status.postgres.url if status.postgres else ""),
            nats_url=settings.nats_url or (status.nats.url if status.nats else ""),
            database_embedded=want_pg,
            nats_embedded=want_nats,
        )
    finally:
        infra.release()
