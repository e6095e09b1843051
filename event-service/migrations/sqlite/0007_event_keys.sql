-- Idempotency moves out of the events table into key tables the writer keeps (see
-- event-service/src/store/keys.rs). A unique index on (scope_id, event_id) dirtied a random leaf
-- per event for clients that send random ids, halving their ingest rate against time-ordered
-- ids (docs/benchmarks.md, "Random client ids"). Now the newest events' keys live in the
-- writer's memory, are flushed sorted into event_keys_small and merged from there into
-- event_keys_large in key order, so that each leaf is written once for many keys.
--
-- The table is rebuilt without its unique constraint (SQLite cannot drop one): this copies every
-- event once, minutes at ten million events, and needs free disk for a second copy meanwhile.
CREATE TABLE events_unkeyed (
    seq                   INTEGER PRIMARY KEY,
    scope_id              INTEGER NOT NULL REFERENCES scopes (id),
    event_id              TEXT NOT NULL,
    event_name            TEXT NOT NULL,
    external_customer_id  TEXT NOT NULL,
    ts                    INTEGER NOT NULL,
    properties            TEXT NOT NULL,
    source                TEXT NOT NULL,
    ingested_at           INTEGER NOT NULL
) STRICT;

INSERT INTO events_unkeyed (seq, scope_id, event_id, event_name, external_customer_id, ts, properties, source, ingested_at)
SELECT seq, scope_id, event_id, event_name, external_customer_id, ts, properties, source, ingested_at
FROM events ORDER BY seq;

DROP TABLE events;
ALTER TABLE events_unkeyed RENAME TO events;
CREATE INDEX events_scope_by_time ON events (scope_id, ts DESC, seq DESC);
CREATE INDEX events_scope_by_name ON events (scope_id, event_name, ts);
CREATE INDEX events_scope_by_customer ON events (scope_id, external_customer_id, ts DESC, seq DESC);

-- Which event (seq) holds each id of a scope. A key is in exactly one of the two tables, or
-- only in the writer's memory while its event's seq is above event_keys_state.flushed_seq.
CREATE TABLE event_keys_small (
    scope_id  INTEGER NOT NULL,
    event_id  TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    PRIMARY KEY (scope_id, event_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE event_keys_large (
    scope_id  INTEGER NOT NULL,
    event_id  TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    PRIMARY KEY (scope_id, event_id)
) STRICT, WITHOUT ROWID;

-- Every event up to flushed_seq has its key in one of the tables; the key counts spare the
-- writer a count of either table at start.
CREATE TABLE event_keys_state (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    flushed_seq  INTEGER NOT NULL,
    small_keys   INTEGER NOT NULL,
    large_keys   INTEGER NOT NULL
) STRICT;

INSERT INTO event_keys_large (scope_id, event_id, seq)
SELECT scope_id, event_id, seq FROM events ORDER BY scope_id, event_id;

INSERT INTO event_keys_state (id, flushed_seq, small_keys, large_keys)
SELECT 1, COALESCE(MAX(seq), 0), 0, COUNT(*) FROM events;
