"""PostgreSQL: the event log, documents, projections, queries."""
