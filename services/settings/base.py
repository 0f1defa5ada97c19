"""What every setting shares: its error, and reading numbers from the environment."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from turnlog.domain.errors import TurnlogError

N = TypeVar("N", int, float)


class ConfigError(TurnlogError, ValueError):
    """Raised when a configuration value cannot be used."""

    code = "config_error"


def number(env: Mapping[str, str], name: str, default: N, kind: Callable[[str], N]) -> N:
    """The non-negative number in ``env[name]``, or ``default`` when unset."""
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
