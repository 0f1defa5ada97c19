-- The append-only event log, its snapshots, and the append function.

CREATE SEQUENCE turnlog_events_position_seq AS bigint CACHE 1;

CREATE TABLE turnlog_events (
    position       bigint      PRIMARY KEY DEFAULT nextval('turnlog_events_position_seq'),
    stream_id      text        NOT NULL,
    version        integer     NOT NULL CHECK (version > 0),
    type           text        NOT NULL,
    schema_version smallint    NOT NULL,
    payload        bytea       NOT NULL,
    recorded_at    timestamptz NOT NULL,
    correlation_id text,
    causation_id   text,
    actor          text,
    prev_hash      bytea       NOT NULL,
    hash           bytea       NOT NULL,
    CONSTRAINT turnlog_events_stream_version UNIQUE (stream_id, version)
);
ALTER SEQUENCE turnlog_events_position_seq OWNED BY turnlog_events.position;

-- Nothing in the log is updated or deleted in place.
CREATE FUNCTION turnlog_events_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'turnlog_events is append-only (% refused)', TG_OP
        USING ERRCODE = 'TL403';
END $$;
CREATE TRIGGER turnlog_events_no_update_delete
    BEFORE UPDATE OR DELETE ON turnlog_events
    FOR EACH ROW EXECUTE FUNCTION turnlog_events_immutable();
CREATE TRIGGER turnlog_events_no_truncate
    BEFORE TRUNCATE ON turnlog_events
    FOR EACH STATEMENT EXECUTE FUNCTION turnlog_events_immutable();

CREATE TABLE turnlog_snapshots (
    stream_id      text        PRIMARY KEY,
    version        integer     NOT NULL,
    type           text        NOT NULL,
    schema_version smallint    NOT NULL,
    state          bytea       NOT NULL,
    hash           bytea       NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now()
);

-- Appends a batch to one stream at an expected version, atomically.
-- The transaction takes its xid before any position is drawn from the sequence: a reader
-- that sees a gap below a committed position can then wait for exactly the transactions
-- that were in progress when it looked (see GlobalReader).
CREATE FUNCTION turnlog_append(
    p_stream text,
    p_expected integer,
    p_prev_hash bytea,
    p_types text[],
    p_schema_versions smallint[],
    p_payloads bytea[],
    p_recorded_at timestamptz[],
    p_correlation text[],
    p_causation text[],
    p_actor text[],
    p_prev_hashes bytea[],
    p_hashes bytea[]
) RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    v_actual integer;
    v_hash bytea;
    v_positions bigint[];
BEGIN
    PERFORM pg_current_xact_id();
    SELECT version, hash INTO v_actual, v_hash
      FROM turnlog_events WHERE stream_id = p_stream
     ORDER BY version DESC LIMIT 1;
    v_actual := coalesce(v_actual, 0);
    IF v_actual <> p_expected THEN
        RAISE EXCEPTION 'version conflict' USING ERRCODE = 'TL409', DETAIL = v_actual::text;
    END IF;
    IF v_actual > 0 AND v_hash IS DISTINCT FROM p_prev_hash THEN
        RAISE EXCEPTION 'previous hash mismatch' USING ERRCODE = 'TL412';
    END IF;
    WITH inserted AS (
        INSERT INTO turnlog_events (stream_id, version, type, schema_version, payload,
                                    recorded_at, correlation_id, causation_id, actor,
                                    prev_hash, hash)
        SELECT p_stream, p_expected + u.n, u.t, u.sv, u.p, u.r, u.c, u.ca, u.a, u.ph, u.h
          FROM unnest(p_types, p_schema_versions, p_payloads, p_recorded_at, p_correlation,
                      p_causation, p_actor, p_prev_hashes, p_hashes)
               WITH ORDINALITY AS u(t, sv, p, r, c, ca, a, ph, h, n)
        RETURNING position
    )
    SELECT array_agg(position ORDER BY position) INTO v_positions FROM inserted;
    RETURN v_positions;
END $$;
