-- turnlog_append_batch (002) with the events' columns in three parameters instead of
-- eleven arrays: one JSON document for the small columns, the payloads as an array, and
-- the events' hashes (SHA-256, 32 bytes each) laid end to end; an event's previous hash
-- is its request's for its first event, else the hash before it. Encoding an array
-- element costs the client far more than encoding a JSON field, and the append is
-- client-bound. Same checks, same rows, same result: one conflict element per request
-- (NULL when appended, else the stream's actual version) and the inserted positions.
CREATE FUNCTION turnlog_append_rows(
    p_streams text[],
    p_expected integer[],
    p_prev_hashes bytea[],
    p_events json,              -- per event {q: request (from 1), v, t, s, r, c, u, a}
    p_payloads bytea[],
    p_hashes bytea,
    OUT conflicts integer[],
    OUT positions bigint[]
) LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    v_actual integer;
    v_hash bytea;
BEGIN
    PERFORM pg_current_xact_id();  -- an xid before any position (see GlobalReader)
    conflicts := array_fill(NULL::integer, ARRAY[cardinality(p_streams)]);
    FOR i IN 1 .. cardinality(p_streams) LOOP
        SELECT version, hash INTO v_actual, v_hash
          FROM turnlog_events WHERE stream_id = p_streams[i]
         ORDER BY version DESC LIMIT 1;
        v_actual := coalesce(v_actual, 0);
        IF v_actual <> p_expected[i]
           OR (v_actual > 0 AND v_hash IS DISTINCT FROM p_prev_hashes[i]) THEN
            conflicts[i] := v_actual;
        END IF;
    END LOOP;
    WITH inserted AS (
        INSERT INTO turnlog_events (stream_id, version, type, schema_version, payload,
                                    recorded_at, correlation_id, causation_id, actor,
                                    prev_hash, hash)
        SELECT p_streams[u.q], u.v, u.t, u.s, u.p, u.r, u.c, u.u, u.a,
               CASE WHEN u.v = p_expected[u.q] + 1 THEN p_prev_hashes[u.q]
                    ELSE substring(p_hashes FROM (u.n * 32 - 63)::integer FOR 32) END,
               substring(p_hashes FROM (u.n * 32 - 31)::integer FOR 32)
          FROM ROWS FROM (
                   json_to_recordset(p_events)
                       AS (q integer, v integer, t text, s smallint, r timestamptz,
                           c text, u text, a text),
                   unnest(p_payloads)
               ) WITH ORDINALITY AS u(q, v, t, s, r, c, u, a, p, n)
         WHERE conflicts[u.q] IS NULL
         ORDER BY u.n
        RETURNING position
    )
    SELECT coalesce(array_agg(position ORDER BY position), '{}') INTO positions FROM inserted;
END $$;
