-- A projection that cannot apply an event stops there alone and says why: one row per
-- failed projection, removed once it applies that event (after an upgrade, or when
-- `turnlog projections retry` asks again).
CREATE TABLE turnlog_projection_failures (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL,
    stream_id  text        NOT NULL,
    version    integer     NOT NULL,
    event_type text        NOT NULL,
    error      text        NOT NULL,
    attempts   integer     NOT NULL DEFAULT 1,
    failed_at  timestamptz NOT NULL DEFAULT now()
);

-- Every serving turnlog process says here, every few seconds, which parts it runs and
-- how each is doing, for `turnlog infra status` and /healthz of other processes.
CREATE TABLE turnlog_processes (
    id         text        PRIMARY KEY,
    host       text        NOT NULL,
    pid        integer     NOT NULL,
    what       text        NOT NULL,
    parts      jsonb       NOT NULL,
    started_at timestamptz NOT NULL,
    seen_at    timestamptz NOT NULL
);
