-- Where each relay has published up to, and a fast check that a message id was handled.

CREATE TABLE turnlog_relay_positions (
    name     text   PRIMARY KEY,
    position bigint NOT NULL
);

CREATE INDEX turnlog_events_received_message
    ON turnlog_events (correlation_id)
    WHERE type = 'session.message_received';
