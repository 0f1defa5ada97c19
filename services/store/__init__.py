"""The event log on PostgreSQL (asyncpg): append, read, follow, snapshots."""
