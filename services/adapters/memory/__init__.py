"""The ports on plain Python objects in one process: for app developers' tests
(``turnlog.testing``) and fast tests of the application; same semantics as PostgreSQL and
NATS, shown by the contract tests that run against both."""
