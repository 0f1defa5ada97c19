"""Settings come from the environment once, with clear errors for unusable values."""

from __future__ import annotations

from pathlib import Path

import pytest

from turnlog.services.config import ConfigError, Settings


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
