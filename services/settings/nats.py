"""NATS credentials and TLS files: which settings name them, and checking them at start."""

from __future__ import annotations

import importlib.util
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from turnlog.services.settings.base import ConfigError

_JWT = b"-----BEGIN NATS USER JWT-----"
_SEED = b"-----BEGIN USER NKEY SEED-----"


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


def check(security: NatsSecurity, names: Mapping[str, str] = NATS_FILES) -> None:
    """Refuse files that cannot be used, naming each by ``names`` (the variable or keyword
    that set it): when settings are read and when a client connects."""
    contents = {key: _read(path, names[key]) for key, path in _files(security).items()}
    if security.creds and security.nkey:
        raise ConfigError(f"set {names['creds']} or {names['nkey']}, not both")
    if "creds" in contents and not (_JWT in contents["creds"] and _SEED in contents["creds"]):
        raise ConfigError(
            f"{names['creds']}: {security.creds} is not a NATS credentials file"
            " (a user JWT and its NKey seed)"
        )
    if "nkey" in contents and not contents["nkey"].strip().startswith(b"SU"):
        raise ConfigError(f"{names['nkey']}: {security.nkey} holds no NKey user seed (SU...)")
    if (security.creds or security.nkey) and importlib.util.find_spec("nkeys") is None:
        name = names["creds" if security.creds else "nkey"]
        raise ConfigError(f"{name} needs the nkeys package: pip install 'nats-py[nkeys]'")
    if (security.tls_cert is None) != (security.tls_key is None):
        raise ConfigError(f"{names['tls_cert']} and {names['tls_key']} go together")
    _check_tls(security, names)


def _files(security: NatsSecurity) -> dict[str, Path]:
    paths = {key: getattr(security, key) for key in NATS_FILES}
    return {key: path for key, path in paths.items() if path is not None}


def _read(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{name}: cannot read {path}: {e.strerror or e}") from None


def _check_tls(security: NatsSecurity, names: Mapping[str, str]) -> None:
    try:
        context = ssl.create_default_context(cafile=security.tls_ca)
    except (ssl.SSLError, OSError) as e:
        name = names["tls_ca"]
        raise ConfigError(f"{name}: {security.tls_ca} is no CA certificate: {e}") from None
    if security.tls_cert is not None and security.tls_key is not None:
        try:
            context.load_cert_chain(security.tls_cert, security.tls_key)
        except (ssl.SSLError, OSError) as e:
            raise ConfigError(
                f"{names['tls_cert']} / {names['tls_key']}: {security.tls_cert} and"
                f" {security.tls_key} are no certificate and key of one another: {e}"
            ) from None


def from_env(env: Mapping[str, str]) -> NatsSecurity:
    """The NATS files of ``env``, each checked: unusable ones are refused, by name."""
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
