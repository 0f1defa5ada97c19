"""turnlog: an event-sourced runtime and service for conversational apps."""

from __future__ import annotations

__version__ = "0.1.0"
