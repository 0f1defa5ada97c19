"""Configuration: read once from an environment mapping, then passed around explicitly."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Where turnlog keeps its data and which servers it talks to.

    A URL left unset means "use the embedded server under ``home``".
    """

    home: Path
    database_url: str | None = None
    nats_url: str | None = None
    log_level: str = "info"
    log_format: str = "auto"
    snapshot_every: int = 200

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            home=Path(env.get("TURNLOG_HOME") or ".turnlog").expanduser().absolute(),
            database_url=env.get("TURNLOG_DATABASE_URL") or None,
            nats_url=env.get("TURNLOG_NATS_URL") or None,
            log_level=env.get("TURNLOG_LOG_LEVEL", "info").lower(),
            log_format=env.get("TURNLOG_LOG_FORMAT", "auto").lower(),
            snapshot_every=int(env.get("TURNLOG_SNAPSHOT_EVERY", "200")),
        )
