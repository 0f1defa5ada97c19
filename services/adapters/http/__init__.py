"""HTTP: the query API and an app's data and endpoint handlers (Litestar)."""
