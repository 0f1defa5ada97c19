"""Which of asyncpg's errors say PostgreSQL is away for now (counted by
``transient`` in ``services/app/log/errors.py``, which the application sees)."""

from __future__ import annotations

import asyncpg

from turnlog.services.app.log.errors import passing_when

# SQLSTATE classes of failures that pass: connection exceptions (08), insufficient
# resources (53), operator intervention such as a shutdown (57), system errors (58) and
# transaction rollbacks (40: serialization failures, deadlocks).
_PASSING = ("08", "40", "53", "57", "58")


def passing(error: BaseException) -> bool:
    """Whether asyncpg's ``error`` says the database is away for now (a restart, a cut
    connection, a rollback worth doing again)."""
    if isinstance(error, asyncpg.PostgresError):
        return (getattr(error, "sqlstate", None) or "")[:2] in _PASSING
    if isinstance(error, asyncpg.exceptions.InternalClientError):
        return True  # a connection cut mid-operation leaves its protocol in a bad state
    if isinstance(error, asyncpg.InterfaceError):
        text = str(error)
        return "connection is closed" in text or "connection was closed" in text
    return False


passing_when(passing)
