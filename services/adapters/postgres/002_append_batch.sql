-- Appends to many streams in one transaction: the group commit behind EventStore.append.
-- Each request names one stream (at most once per batch), its expected version and the
-- hash of that version. Requests whose stream is elsewhere are skipped and reported with
-- the stream's actual version; the others are inserted. Returns one element per request:
-- NULL when appended, else the actual version. Positions are returned through p_out.
CREATE FUNCTION turnlog_append_batch(
    p_streams text[],
    p_expected integer[],
    p_prev_hashes bytea[],
    p_request integer[],
    p_versions integer[],
    p_types text[],
    p_schema_versions smallint[],
    p_payloads bytea[],
    p_recorded_at timestamptz[],
    p_correlation text[],
    p_causation text[],
    p_actor text[],
    p_event_prev_hashes bytea[],
    p_hashes bytea[],
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
        SELECT p_streams[u.rq], u.v, u.t, u.sv, u.p, u.r, u.c, u.ca, u.a, u.ph, u.h
          FROM unnest(p_request, p_versions, p_types, p_schema_versions, p_payloads,
                      p_recorded_at, p_correlation, p_causation, p_actor,
                      p_event_prev_hashes, p_hashes)
               WITH ORDINALITY AS u(rq, v, t, sv, p, r, c, ca, a, ph, h, n)
         WHERE conflicts[u.rq] IS NULL
         ORDER BY u.n
        RETURNING position
    )
    SELECT coalesce(array_agg(position ORDER BY position), '{}') INTO positions FROM inserted;
END $$;
