-- Writes a turn made outside its session's stream (collection documents), found by the
-- turn's message id: what a re-run compares them with.

CREATE INDEX turnlog_events_document_correlation
    ON turnlog_events (correlation_id)
    WHERE type LIKE 'document.%';
