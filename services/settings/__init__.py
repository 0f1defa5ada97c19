"""Configuration: read once from an environment mapping, then passed around explicitly.

Nothing else of services/ is imported here, so every part may read its settings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from turnlog.services.settings.base import ConfigError, number
from turnlog.services.settings.keys import ApiKey, api_keys
from turnlog.services.settings.nats import NATS_FILES, NatsSecurity, check
from turnlog.services.settings.nats import from_env as nats_files_from_env

__all__ = [
    "NATS_FILES",
    "ApiKey",
    "ConfigError",
    "NatsSecurity",
    "Settings",
    "StreamLimits",
    "api_keys",
    "check",
]

DAY = 24 * 3600.0


@dataclass(frozen=True)
class StreamLimits:
    """What the JetStream streams keep: at most so many bytes (0: no limit), each message
    so many seconds (0: forever). Inbound messages go once handled, whatever their age."""

    in_max_bytes: int = 256 << 20
    events_max_age: float = 7 * DAY
    events_max_bytes: int = 1 << 30
    dlq_max_age: float = 30 * DAY
    dlq_max_bytes: int = 128 << 20

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StreamLimits:
        d = cls()
        return cls(
            in_max_bytes=number(env, "TURNLOG_IN_MAX_BYTES", d.in_max_bytes, int),
            events_max_age=number(env, "TURNLOG_EVENTS_MAX_AGE", d.events_max_age, float),
            events_max_bytes=number(env, "TURNLOG_EVENTS_MAX_BYTES", d.events_max_bytes, int),
            dlq_max_age=number(env, "TURNLOG_DLQ_MAX_AGE", d.dlq_max_age, float),
            dlq_max_bytes=number(env, "TURNLOG_DLQ_MAX_BYTES", d.dlq_max_bytes, int),
        )


@dataclass(frozen=True)
class Settings:
    """Where turnlog keeps its data and which servers it talks to.

    A URL left unset means "use the embedded server under ``home``".
    """

    home: Path
    database_url: str | None = None
    nats_url: str | None = None
    nats_security: NatsSecurity = field(default_factory=NatsSecurity)
    log_level: str = "info"
    log_format: str = "auto"
    snapshot_every: int = 200
    session_idle_timeout: float = 0.0
    max_live_sessions: int = 10_000
    subject_prefix: str = "turnlog"
    max_inbound_bytes: int = 256 * 1024
    max_file_bytes: int = 25 * 1024 * 1024
    ack_wait: float = 30.0
    turn_attempts: int = 5
    api_keys: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = 8330
    metrics_port: int = 0
    streams: StreamLimits = StreamLimits()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            home=Path(env.get("TURNLOG_HOME") or ".turnlog").expanduser().absolute(),
            database_url=env.get("TURNLOG_DATABASE_URL") or None,
            nats_url=env.get("TURNLOG_NATS_URL") or None,
            nats_security=nats_files_from_env(env),
            log_level=env.get("TURNLOG_LOG_LEVEL", "info").lower(),
            log_format=env.get("TURNLOG_LOG_FORMAT", "auto").lower(),
            snapshot_every=number(env, "TURNLOG_SNAPSHOT_EVERY", 200, int),
            session_idle_timeout=number(env, "TURNLOG_SESSION_IDLE_TIMEOUT", 0.0, float),
            max_live_sessions=number(env, "TURNLOG_MAX_LIVE_SESSIONS", 10_000, int),
            subject_prefix=env.get("TURNLOG_SUBJECT_PREFIX") or "turnlog",
            max_inbound_bytes=number(env, "TURNLOG_MAX_INBOUND_BYTES", 256 * 1024, int),
            max_file_bytes=number(env, "TURNLOG_MAX_FILE_BYTES", 25 * 1024 * 1024, int),
            ack_wait=number(env, "TURNLOG_ACK_WAIT", 30.0, float),
            turn_attempts=max(1, number(env, "TURNLOG_TURN_ATTEMPTS", 5, int)),
            api_keys=_api_keys(env.get("TURNLOG_API_KEYS", "")),
            http_host=env.get("TURNLOG_HTTP_HOST") or "127.0.0.1",
            http_port=number(env, "TURNLOG_HTTP_PORT", 8330, int),
            metrics_port=number(env, "TURNLOG_METRICS_PORT", 0, int),
            streams=StreamLimits.from_env(env),
        )


def _api_keys(text: str) -> str:
    api_keys(text)  # refuse a malformed entry at start, not at the first request
    return text
