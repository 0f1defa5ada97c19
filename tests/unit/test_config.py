"""Settings come from the environment once, with clear errors for unusable values."""

from __future__ import annotations

from pathlib import Path

import pytest

from turnlog.services.settings import ConfigError, Settings


def test_defaults_use_the_embedded_servers_under_dot_turnlog() -> None:
    settings = Settings.from_env({})
    assert settings.home == Path(".turnlog").absolute()
    assert settings.database_url is None and settings.nats_url is None
    assert settings.session_idle_timeout == 0 and settings.max_live_sessions == 10_000


def test_values_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "TURNLOG_HOME": "/srv/tl",
            "TURNLOG_DATABASE_URL": "postgresql://db/x",
            "TURNLOG_NATS_URL": "nats://n:4222",
            "TURNLOG_SESSION_IDLE_TIMEOUT": "90.5",
            "TURNLOG_MAX_LIVE_SESSIONS": "12",
            "TURNLOG_SNAPSHOT_EVERY": "50",
        }
    )
    assert settings.home == Path("/srv/tl") and settings.database_url == "postgresql://db/x"
    assert settings.session_idle_timeout == 90.5 and settings.max_live_sessions == 12
    assert settings.snapshot_every == 50


@pytest.mark.parametrize("value", ["soon", "-1"])
def test_unusable_numbers_are_refused_by_name(value: str) -> None:
    with pytest.raises(ConfigError, match="TURNLOG_MAX_LIVE_SESSIONS"):
        Settings.from_env({"TURNLOG_MAX_LIVE_SESSIONS": value})


SEED = "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY"
CREDS = (
    "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.e30.c2ln\n------END NATS USER JWT------\n\n"
    f"-----BEGIN USER NKEY SEED-----\n{SEED}\n------END USER NKEY SEED------\n"
)


def nats_env(**files: str) -> dict[str, str]:
    return {"TURNLOG_NATS_URL": "nats://n:4222", **files}


def test_nats_credentials_and_tls_files_are_read_as_paths(tmp_path: Path) -> None:
    from tests.tls import make_certificates

    (tmp_path / "u.creds").write_text(CREDS)
    certs = make_certificates(tmp_path)
    settings = Settings.from_env(
        nats_env(
            TURNLOG_NATS_CREDS=str(tmp_path / "u.creds"),
            TURNLOG_NATS_TLS_CA=str(certs.ca),
            TURNLOG_NATS_TLS_CERT=str(certs.client_cert),
            TURNLOG_NATS_TLS_KEY=str(certs.client_key),
        )
    )
    security = settings.nats_security
    assert security.creds == tmp_path / "u.creds" and security.nkey is None
    assert (security.tls_ca, security.tls_cert) == (certs.ca, certs.client_cert)
    assert security.tls and security.configured


def test_no_nats_security_settings_connect_as_before() -> None:
    security = Settings.from_env(nats_env()).nats_security
    assert not security.configured and not security.tls


@pytest.mark.parametrize("name", ["TURNLOG_NATS_CREDS", "TURNLOG_NATS_NKEY", "TURNLOG_NATS_TLS_CA"])
def test_a_missing_file_is_refused_by_name(name: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{name}: cannot read .*missing"):
        Settings.from_env(nats_env(**{name: str(tmp_path / "missing")}))


def test_files_that_are_not_what_they_should_be_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_text("hello")
    for name, what in (
        ("TURNLOG_NATS_CREDS", "not a NATS credentials file"),
        ("TURNLOG_NATS_NKEY", "no NKey user seed"),
        ("TURNLOG_NATS_TLS_CA", "no CA certificate"),
    ):
        with pytest.raises(ConfigError, match=f"{name}: .*{what}"):
            Settings.from_env(nats_env(**{name: str(junk)}))


def test_conflicting_or_partial_nats_settings_are_refused(tmp_path: Path) -> None:
    (tmp_path / "u.creds").write_text(CREDS)
    (tmp_path / "u.nk").write_text(SEED + "\n")
    with pytest.raises(ConfigError, match="TURNLOG_NATS_CREDS or TURNLOG_NATS_NKEY, not both"):
        Settings.from_env(
            nats_env(
                TURNLOG_NATS_CREDS=str(tmp_path / "u.creds"),
                TURNLOG_NATS_NKEY=str(tmp_path / "u.nk"),
            )
        )
    with pytest.raises(ConfigError, match="TURNLOG_NATS_TLS_CERT and TURNLOG_NATS_TLS_KEY go"):
        Settings.from_env(nats_env(TURNLOG_NATS_TLS_CERT=str(tmp_path / "u.nk")))
    with pytest.raises(ConfigError, match="TURNLOG_NATS_URL is not"):
        Settings.from_env({"TURNLOG_NATS_NKEY": str(tmp_path / "u.nk")})


def test_a_certificate_with_someone_elses_key_is_refused(tmp_path: Path) -> None:
    from tests.tls import make_certificates

    certs = make_certificates(tmp_path)
    with pytest.raises(ConfigError, match="TURNLOG_NATS_TLS_CERT / TURNLOG_NATS_TLS_KEY"):
        Settings.from_env(
            nats_env(
                TURNLOG_NATS_TLS_CERT=str(certs.client_cert),
                TURNLOG_NATS_TLS_KEY=str(certs.server_key),
            )
        )


def test_the_command_line_exits_2_on_an_unusable_nats_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from turnlog.services.cli.main import main

    monkeypatch.setenv("TURNLOG_NATS_URL", "nats://n:4222")
    monkeypatch.setenv("TURNLOG_NATS_CREDS", str(tmp_path / "gone.creds"))
    assert main(["infra", "status"]) == 2
    assert capsys.readouterr().err.startswith("turnlog: TURNLOG_NATS_CREDS: cannot read")


def test_stream_limits_default_to_a_bounded_bus_and_are_read_from_the_environment() -> None:
    default = Settings.from_env({}).streams
    assert default.in_max_bytes == 256 << 20 and default.events_max_age == 7 * 24 * 3600
    assert default.dlq_max_age == 30 * 24 * 3600
    streams = Settings.from_env(
        {
            "TURNLOG_IN_MAX_BYTES": "1048576",
            "TURNLOG_EVENTS_MAX_AGE": "3600",
            "TURNLOG_EVENTS_MAX_BYTES": "0",
            "TURNLOG_DLQ_MAX_AGE": "86400.5",
            "TURNLOG_DLQ_MAX_BYTES": "4096",
        }
    ).streams
    assert (streams.in_max_bytes, streams.events_max_age, streams.events_max_bytes) == (
        1 << 20,
        3600,
        0,
    )
    assert (streams.dlq_max_age, streams.dlq_max_bytes) == (86400.5, 4096)
    with pytest.raises(ConfigError, match="TURNLOG_EVENTS_MAX_AGE"):
        Settings.from_env({"TURNLOG_EVENTS_MAX_AGE": "a week"})
