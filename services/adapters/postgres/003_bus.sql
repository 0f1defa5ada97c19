-- Where each relay has published up to; and each inbound message id received only once.

CREATE TABLE turnlog_relay_positions (
    name     text   PRIMARY KEY,
    position bigint NOT NULL
);

CREATE UNIQUE INDEX turnlog_events_received_message
    ON turnlog_events (correlation_id)
    WHERE type = 'session.message_received';

-- This log's identity: relays prefix their message ids with it, so two logs (say a test
-- database and a reset one) publishing to one NATS never look like duplicates.
CREATE TABLE turnlog_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO turnlog_meta (key, value) VALUES ('log_id', gen_random_uuid()::text);
