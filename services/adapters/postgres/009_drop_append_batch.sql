-- turnlog_append_batch (002) is replaced by turnlog_append_rows (007), which takes a
-- batch in three parameters; nothing calls the old one.

DROP FUNCTION IF EXISTS turnlog_append_batch(
    text[], integer[], bytea[], integer[], integer[], text[], smallint[], bytea[],
    timestamptz[], text[], text[], text[], bytea[], bytea[]
);
