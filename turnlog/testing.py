"""Test an app without servers: ``AppTester`` runs it on the memory adapters.

See docs/testing-apps.md."""

from __future__ import annotations

from turnlog.services.bootstrap.testing import AppTester, FixedClock, TesterError, TestSession

__all__ = ["AppTester", "FixedClock", "TestSession", "TesterError"]
