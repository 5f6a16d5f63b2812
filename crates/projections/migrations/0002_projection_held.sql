-- Events a projection holds back: applying one failed for a permanent reason (it cannot be
-- read, an amount the read store cannot hold exactly, ...), or an earlier event of the same
-- stream is held (`behind`), since a stream's events apply in order. The row is written in the
-- transaction that moves the checkpoint past the event, so the projection goes on and nothing
-- is lost; `upline quarantine retry` applies the held events again, deleting each row in the
-- transaction that applies its event (so a retried event never counts twice).
--
-- `generation`: the generation of the projection's tables it was held for (a rebuild holds
-- into its own generation; the rows of a generation are deleted with its tables).
CREATE TABLE IF NOT EXISTS projection_held (
    projection  TEXT NOT NULL,
    generation  BIGINT NOT NULL,
    position    BIGINT NOT NULL,
    stream      TEXT NOT NULL,
    revision    BIGINT NOT NULL,
    event_id    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    reason      TEXT NOT NULL,
    -- Wall-clock time it was first held (RFC 3339 UTC, microseconds).
    held_at     TEXT NOT NULL,
    retries     BIGINT NOT NULL,
    behind      BIGINT NULL,
    PRIMARY KEY (projection, generation, position)
);
CREATE INDEX IF NOT EXISTS projection_held_stream ON projection_held (projection, generation, stream);
