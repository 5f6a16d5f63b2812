-- upline event store, schema version 2: the stream's category in its own column.
--
-- A category is the part of a stream's name before its first '-' (EventStoreDB's
-- convention: 'order-shopify-s-1' is in 'order'). Readers that follow one kind of
-- stream (the postings follow 'order', the company model 'distributor', 'sku', 'plan'
-- and 'customer') read by (category, position) and touch only the rows they return,
-- instead of scanning every later event and comparing its name.

ALTER TABLE events ADD COLUMN category TEXT NOT NULL DEFAULT '';

UPDATE events SET category = CASE
    WHEN instr(stream_id, '-') > 0 THEN substr(stream_id, 1, instr(stream_id, '-') - 1)
    ELSE stream_id
END;

CREATE INDEX events_category_position ON events (category, position);
