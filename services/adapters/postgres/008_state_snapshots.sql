-- Replay states: a session's history, data and blocks folded as of a version, kept so
-- that replaying a long session folds only the events after the nearest one. A cache:
-- any row may be deleted; each is sealed with the session's user's key.

CREATE TABLE turnlog_state_snapshots (
    stream_id      text     NOT NULL,
    version        integer  NOT NULL,
    schema_version smallint NOT NULL,
    state          bytea    NOT NULL,
    PRIMARY KEY (stream_id, version)
);
