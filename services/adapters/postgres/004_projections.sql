-- Where each projection has applied the log up to, written in the same transaction as
-- the projection's own writes.
CREATE TABLE turnlog_projection_positions (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
