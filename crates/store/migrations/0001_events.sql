-- upline event store, schema version 1.
--
-- One append-only table holds every event of every stream. It is written by
-- exactly one writer task (group commit, see crates/store/SCHEMA.md) and is
-- meant to be readable by an auditor with nothing but the sqlite3 shell:
-- identifiers and JSON payloads are stored as TEXT, timestamps as RFC 3339 UTC.

CREATE TABLE events (
    -- Global position: 1, 2, 3, ... in commit order. AUTOINCREMENT guarantees
    -- a position is never reused, so a reader that saw position p has seen
    -- every committed position < p.
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The stream (aggregate) the event belongs to, e.g. 'order-42'.
    stream_id   TEXT    NOT NULL CHECK (length(stream_id) BETWEEN 1 AND 255),
    -- 0-based revision of the event inside its stream (EventStoreDB semantics).
    revision    INTEGER NOT NULL CHECK (typeof(revision) = 'integer' AND revision >= 0),
    -- Client-chosen UUID (lowercase, hyphenated); the idempotency key of retried appends.
    event_id    TEXT    NOT NULL CHECK (length(event_id) = 36),
    -- Event type name, e.g. 'OrderPlaced'.
    event_type  TEXT    NOT NULL CHECK (length(event_type) >= 1),
    -- Event payload, JSON text exactly as the application serialized it.
    data        TEXT    NOT NULL CHECK (json_valid(data)),
    -- Optional JSON metadata (correlation/causation ids, actor, ...); NULL when absent.
    metadata    TEXT             CHECK (metadata IS NULL OR json_valid(metadata)),
    -- Commit time of the batch that wrote the event, RFC 3339 UTC with microseconds.
    recorded_at TEXT    NOT NULL,
    -- Optimistic-concurrency backstop: a revision exists at most once per stream.
    UNIQUE (stream_id, revision)
);

-- Look up an event by its id (idempotency checks, auditors following a causation id).
CREATE INDEX events_event_id ON events (event_id);

-- Convenience view for auditors: one row per stream. Derived, never written.
CREATE VIEW streams AS
SELECT
    stream_id,
    MAX(revision)    AS last_revision,
    COUNT(*)         AS event_count,
    MIN(position)    AS first_position,
    MAX(position)    AS last_position,
    MIN(recorded_at) AS created_at,
    MAX(recorded_at) AS updated_at
FROM events
GROUP BY stream_id;
