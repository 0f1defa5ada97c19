"""Configuration: read once from an environment mapping, then passed around explicitly."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

N = TypeVar("N", int, float)
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
            in_max_bytes=_number(env, "TURNLOG_IN_MAX_BYTES", d.in_max_bytes, int),
            events_max_age=_number(env, "TURNLOG_EVENTS_MAX_AGE", d.events_max_age, float),
            events_max_bytes=_number(env, "TURNLOG_EVENTS_MAX_BYTES", d.events_max_bytes, int),
            dlq_max_age=_number(env, "TURNLOG_DLQ_MAX_AGE", d.dlq_max_age, float),
            dlq_max_bytes=_number(env, "TURNLOG_DLQ_MAX_BYTES", d.dlq_max_bytes, int),
        )


@dataclass(frozen=True)
class NatsSecurity:
    """The files every NATS connection proves who it is with and checks the server by.
    All unset: connect as the URL says (``nats://user:pass@host``, ``nats://token@host``,
    ``tls://host``)."""

    creds: Path | None = None  # a .creds file: a user JWT and its NKey seed
    nkey: Path | None = None  # an NKey user seed
    tls_ca: Path | None = None  # the CA that signed the server's certificate
    tls_cert: Path | None = None  # a client certificate, with tls_key
    tls_key: Path | None = None

    @property
    def tls(self) -> bool:
        return any((self.tls_ca, self.tls_cert, self.tls_key))

    @property
    def configured(self) -> bool:
        return any((self.creds, self.nkey, self.tls))


# Which variable sets each file, to name it in errors.
NATS_FILES = {
    "creds": "TURNLOG_NATS_CREDS",
    "nkey": "TURNLOG_NATS_NKEY",
    "tls_ca": "TURNLOG_NATS_TLS_CA",
    "tls_cert": "TURNLOG_NATS_TLS_CERT",
    "tls_key": "TURNLOG_NATS_TLS_KEY",
}


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
    api_keys: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = 8330
    streams: StreamLimits = StreamLimits()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            home=Path(env.get("TURNLOG_HOME") or ".turnlog").expanduser().absolute(),
            database_url=env.get("TURNLOG_DATABASE_URL") or None,
            nats_url=env.get("TURNLOG_NATS_URL") or None,
            nats_security=_nats_security(env),
            log_level=env.get("TURNLOG_LOG_LEVEL", "info").lower(),
            log_format=env.get("TURNLOG_LOG_FORMAT", "auto").lower(),
            snapshot_every=_number(env, "TURNLOG_SNAPSHOT_EVERY", 200, int),
            session_idle_timeout=_number(env, "TURNLOG_SESSION_IDLE_TIMEOUT", 0.0, float),
            max_live_sessions=_number(env, "TURNLOG_MAX_LIVE_SESSIONS", 10_000, int),
            subject_prefix=env.get("TURNLOG_SUBJECT_PREFIX") or "turnlog",
            max_inbound_bytes=_number(env, "TURNLOG_MAX_INBOUND_BYTES", 256 * 1024, int),
            max_file_bytes=_number(env, "TURNLOG_MAX_FILE_BYTES", 25 * 1024 * 1024, int),
            ack_wait=_number(env, "TURNLOG_ACK_WAIT", 30.0, float),
            api_keys=_api_keys(env.get("TURNLOG_API_KEYS", "")),
            http_host=env.get("TURNLOG_HTTP_HOST") or "127.0.0.1",
            http_port=_number(env, "TURNLOG_HTTP_PORT", 8330, int),
            streams=StreamLimits.from_env(env),
        )


class ConfigError(ValueError):
    """Raised when a configuration value cannot be used."""


def _number(env: Mapping[str, str], name: str, default: N, kind: Callable[[str], N]) -> N:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {raw!r}")
    return value


def _api_keys(text: str) -> str:
    from turnlog.services.app.access import parse_keys

    parse_keys(text)  # refuse a malformed entry at start, not at the first request
    return text


def _nats_security(env: Mapping[str, str]) -> NatsSecurity:
    from turnlog.services.adapters.nats.connection import check

    paths = {key: env.get(name) or None for key, name in NATS_FILES.items()}
    security = NatsSecurity(**{k: Path(v).expanduser() for k, v in paths.items() if v})
    if security.configured and not env.get("TURNLOG_NATS_URL"):
        name = next(NATS_FILES[k] for k, v in paths.items() if v)
        raise ConfigError(
            f"{name} is set but TURNLOG_NATS_URL is not: the embedded NATS takes no"
            " credentials and no TLS"
        )
    check(security, NATS_FILES)  # unusable files are refused at start, by name
    return security
