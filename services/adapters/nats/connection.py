"""Every NATS connection turnlog makes: credentials, TLS and connection logs, set in one place."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import structlog
from nats.aio.client import Client as NATS
from nats.errors import AuthorizationError

from turnlog.domain.errors import TurnlogError
from turnlog.services.settings import NatsSecurity

log = structlog.get_logger("turnlog.nats")


class Refused(TurnlogError):
    """Raised when NATS refuses the credentials, or the TLS handshake fails, as turnlog
    first connects: trying again would not help."""

    code = "connection_refused"


class InsecureConnection(TurnlogError):
    """Raised when TLS was asked for (a ``tls://`` URL or TLS files) but the server did
    not require it: nats-py would then have talked to it in clear."""

    code = "insecure_connection"


def tls_context(security: NatsSecurity) -> ssl.SSLContext | None:
    """The TLS context of the connection: the server checked against ``tls_ca`` (else
    the system's CAs), the client certificate presented; None without TLS files."""
    if not security.tls:
        return None
    context = ssl.create_default_context(cafile=security.tls_ca)
    if security.tls_cert is not None and security.tls_key is not None:
        context.load_cert_chain(security.tls_cert, security.tls_key)
    return context


def redact(url: str) -> str:
    """``url`` without its password or token (a user alone is a token), for logs and errors."""
    parts = urlsplit(url)
    if parts.username is None:
        return url
    who = "***" if parts.password is None else f"{parts.username}:***"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{who}@{host}"))


def nats_options(
    nc: NATS, url: str, security: NatsSecurity, inbox_prefix: str | None = None
) -> dict[str, Any]:
    """The keyword arguments of ``nc.connect`` for every connection turnlog makes.
    User/password and token come from the URL itself (nats-py reads them there)."""
    options: dict[str, Any] = {
        "connect_timeout": 5,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        **_callbacks(nc, url),
    }
    if security.creds is not None:
        options["user_credentials"] = str(security.creds)
    if security.nkey is not None:
        options["nkeys_seed"] = str(security.nkey)
    if (context := tls_context(security)) is not None:
        options["tls"] = context
    if inbox_prefix:
        options["inbox_prefix"] = inbox_prefix
    return options


def _callbacks(nc: NATS, url: str) -> dict[str, Any]:
    """One log line for each thing that happens to the connection (instead of nats-py's
    tracebacks); while it reconnects, each failed attempt only at debug level."""
    bound = log.bind(nats=redact(url))

    async def error(e: Exception) -> None:
        text = str(e) or type(e).__name__
        if nc.is_reconnecting:
            bound.debug("NATS reconnect attempt failed", error=text)
        elif "permissions violation" in text.lower():
            bound.error("NATS refused an operation", error=text)
        else:
            bound.warning("NATS error", error=text)

    async def disconnected() -> None:
        if not nc.is_closed:  # a close is not a loss
            bound.warning("NATS connection lost")

    async def reconnected() -> None:
        bound.info("NATS connection back")

    return {"error_cb": error, "disconnected_cb": disconnected, "reconnected_cb": reconnected}


async def connect(
    url: str, security: NatsSecurity, *, inbox_prefix: str | None = None, wait: bool = True
) -> NATS:
    """Connect to ``url`` as ``security`` says. An unreachable server is waited for (as
    nats-py does), unless ``wait`` is False (a one-off command: it fails at once, and the
    connection does not reconnect); refused credentials or a failed TLS handshake raise
    Refused at once, a server that does not require TLS when it was asked for
    InsecureConnection."""
    nc = NATS()
    options = nats_options(nc, url, security, inbox_prefix)
    if not wait:
        options |= {"allow_reconnect": False, "max_reconnect_attempts": 1}
    refused: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
    logged = options["error_cb"]

    async def error(e: Exception) -> None:
        if _fatal(e) and not refused.done() and not nc.is_connected:
            refused.set_result(e)
        await logged(e)

    connecting = asyncio.ensure_future(nc.connect(url, **{**options, "error_cb": error}))
    either: list[asyncio.Future[Any]] = [connecting, refused]
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not connecting.done():
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
            await nc.close()
    if connecting.cancelled():  # cut short: the server refused
        raise Refused(str(refused.result()) or type(refused.result()).__name__)
    connecting.result()
    if (security.tls or urlsplit(url).scheme == "tls") and not _tls_required(nc):
        await nc.close()
        raise InsecureConnection(
            "the server does not require TLS, though TLS was asked for: refusing to talk in clear"
        )
    return nc


def _fatal(e: Exception) -> bool:
    """Whether connecting again the same way cannot help."""
    refused = "authorization violation" in str(e).lower()
    return refused or isinstance(e, AuthorizationError | ssl.SSLError)


def _tls_required(nc: NATS) -> bool:
    # nats-py switches to TLS only when the server's INFO says tls_required; it has no
    # public way to ask, so read the INFO it keeps.
    info: dict[str, Any] = getattr(nc, "_server_info", {})
    return bool(info.get("tls_required"))
