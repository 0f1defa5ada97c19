"""PostgreSQL: the event log, documents, projections, queries."""

# asyncpg's passing errors count as transient wherever this adapter is in use
from turnlog.services.adapters.postgres import errors as _errors  # noqa: F401
