-- The read store's bookkeeping, shared by SQLite and PostgreSQL (one set of migrations for both:
-- TEXT and BIGINT columns only, no AUTOINCREMENT/SERIAL, no engine-specific syntax).
--
-- One row per projection. A projection's rows live in generation tables ({table}_g{generation})
-- behind views named by the logical table; `generation` is the one the views show, `position`
-- the last event of the event store ($all global position) applied to it. The rows of a batch of
-- events and the new `position` are written in one transaction, so a crash or a replayed event
-- never counts twice.
--
-- While `upline projections rebuild` runs, `rebuilding_generation` is the generation being built
-- from position 0 and `rebuilding_position` its checkpoint; when it has caught up, one
-- transaction points the views at it, sets `generation`/`position` and drops the old tables.
CREATE TABLE IF NOT EXISTS projection_state (
    name                  TEXT PRIMARY KEY,
    generation            BIGINT NOT NULL,
    position              BIGINT NOT NULL,
    -- Wall-clock time of the last change of this row (RFC 3339 UTC, microseconds).
    updated_at            TEXT NOT NULL,
    rebuilding_generation BIGINT NULL,
    rebuilding_position   BIGINT NULL,
    -- recorded_at of the event at `position` (for the lag in seconds); NULL before the first.
    last_recorded_at      TEXT NULL
);
