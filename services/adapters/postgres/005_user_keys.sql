-- Per-user keys for sealing personal fields of events (crypto-shredding). Erasing a user
-- destroys their keys (key NULL, erased_at set); the events themselves never change. A
-- user who writes again after an erasure gets a new generation: what was erased stays
-- erased, what comes after is theirs again.
CREATE TABLE turnlog_user_keys (
    user_id    text        NOT NULL,
    generation integer     NOT NULL CHECK (generation > 0),
    key        bytea       CHECK (octet_length(key) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at  timestamptz,
    PRIMARY KEY (user_id, generation),
    CHECK ((key IS NULL) = (erased_at IS NOT NULL))
);
