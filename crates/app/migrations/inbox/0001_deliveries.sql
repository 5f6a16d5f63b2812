-- upline inbox, schema version 1.
--
-- The inbox has its own file (data/inbox.sqlite) and its own migrations: the
-- webhook answer waits on this file's fsync, never on the event store's.
-- One row per distinct platform event. Written by exactly one writer task
-- (group commit, crates/app/src/inbox/sqlite/writer.rs); readable by an
-- operator with nothing but the sqlite3 shell: ids, headers (JSON) and
-- timestamps (RFC 3339 UTC, microseconds, so they sort as text) are TEXT.

CREATE TABLE deliveries (
    -- Inbox item id: 1, 2, 3, ... in acceptance order; never reused. Workers
    -- take pending items oldest (lowest id) first.
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    -- 'shopify', 'woocommerce', 'magento', 'direct'.
    platform       TEXT    NOT NULL CHECK (length(platform) >= 1),
    -- The shop on its platform, e.g. 'acme.myshopify.com'.
    shop           TEXT    NOT NULL CHECK (length(shop) >= 1),
    -- The platform's topic, e.g. 'orders/paid'.
    topic          TEXT    NOT NULL,
    -- The platform's event identity: the same (platform, shop, dedupe_key)
    -- delivered again is a duplicate and is not stored again.
    dedupe_key     TEXT    NOT NULL CHECK (length(dedupe_key) >= 1),
    -- This delivery's own id (e.g. X-Shopify-Webhook-Id), for logs and causation.
    delivery_id    TEXT    NOT NULL,
    -- When the gateway received it, RFC 3339 UTC with microseconds.
    received_at    TEXT    NOT NULL,
    -- Selected non-secret headers, a JSON object of strings.
    headers        TEXT    NOT NULL CHECK (json_valid(headers) AND json_type(headers) = 'object'),
    -- The raw, verified body, byte for byte.
    body           BLOB    NOT NULL CHECK (typeof(body) = 'blob'),
    status         TEXT    NOT NULL DEFAULT 'pending'
                           CHECK (status IN ('pending', 'processed', 'ignored', 'parked')),
    -- How many times a worker took the item.
    attempts       INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- A pending item is not handed out before this time: its lease (taken by
    -- a worker) or its retry back-off (released after a failure).
    available_at   TEXT    NOT NULL,
    -- The last transient failure a worker reported (release), if any.
    last_error     TEXT,
    -- Why the item was ignored or parked; NULL while pending or when processed.
    outcome_reason TEXT,
    -- When the item was completed; NULL exactly while it is pending.
    completed_at   TEXT    CHECK ((status = 'pending') = (completed_at IS NULL)),
    -- How many times the same event was delivered again after this row.
    duplicates     INTEGER NOT NULL DEFAULT 0 CHECK (duplicates >= 0),
    UNIQUE (platform, shop, dedupe_key)
);

-- Claims: pending items in id order (the partial index holds only pending rows,
-- so it stays small however many items were completed).
CREATE INDEX deliveries_pending ON deliveries (id, available_at) WHERE status = 'pending';

-- Stats: counts per status and the oldest pending received_at, from the index alone.
CREATE INDEX deliveries_status ON deliveries (status, received_at);
