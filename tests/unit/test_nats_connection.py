"""The options every NATS connection is made with, from the configured security."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from turnlog.services.adapters.nats.client import Client, ClientError
from turnlog.services.adapters.nats.connection import nats_options, redact
from turnlog.services.settings import NatsSecurity


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("nats://runtime:s3cret@nats:4222", "nats://runtime:***@nats:4222"),
        ("tls://t0ken@nats:4222", "tls://***@nats:4222"),
    ],
)
def test_urls_are_shown_without_passwords_or_tokens(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_without_security_only_the_url_and_the_callbacks_count() -> None:
    options = nats_options(NATS(), "nats://u:p@h:4222", NatsSecurity())
    assert {"user_credentials", "nkeys_seed", "tls", "inbox_prefix"}.isdisjoint(options)
    assert {"error_cb", "disconnected_cb", "reconnected_cb"} <= set(options)
    assert options["max_reconnect_attempts"] == -1


def test_credentials_nkeys_tls_and_the_inbox_prefix_reach_nats_py(tmp_path: Path) -> None:
    from tests.tls import make_certificates

    certs = make_certificates(tmp_path)
    creds = NatsSecurity(creds=tmp_path / "u.creds", tls_ca=certs.ca)
    options = nats_options(NATS(), "tls://h:4222", creds, inbox_prefix="_INBOX_notes")
    assert options["user_credentials"] == str(tmp_path / "u.creds")
    assert isinstance(options["tls"], ssl.SSLContext)
    assert options["inbox_prefix"] == "_INBOX_notes"
    seed = NatsSecurity(nkey=tmp_path / "u.nk")
    assert nats_options(NATS(), "nats://h:4222", seed)["nkeys_seed"] == str(tmp_path / "u.nk")


async def test_the_client_names_its_keyword_for_an_unusable_file(tmp_path: Path) -> None:
    with pytest.raises(ClientError, match="nkey_seed: cannot read"):
        await Client.connect("nats://h:4222", nkey_seed=tmp_path / "gone.nk")
    (tmp_path / "c.pem").write_text("")
    with pytest.raises(ClientError, match="tls_cert and tls_key go together"):
        await Client.connect("nats://h:4222", tls_cert=tmp_path / "c.pem")
    with pytest.raises(ClientError, match="inbox_prefix"):
        await Client.connect("nats://h:4222", inbox_prefix="_INBOX.>")
