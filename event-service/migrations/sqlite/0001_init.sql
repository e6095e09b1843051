-- Usage events. Times are microseconds since the Unix epoch. `seq` (the rowid) is a time-ordered
-- key: inserts append at the right edge of the primary-key index (a random UUID key made batched
-- inserts several times slower), and it breaks timestamp ties for keyset paging.
CREATE TABLE events (
    seq                   INTEGER PRIMARY KEY,
    tenant_id             TEXT NOT NULL,
    environment           TEXT NOT NULL,
    event_id              TEXT NOT NULL,
    event_name            TEXT NOT NULL,
    external_customer_id  TEXT NOT NULL,
    ts                    INTEGER NOT NULL,
    properties            TEXT NOT NULL,
    source                TEXT NOT NULL,
    ingested_at           INTEGER NOT NULL,
    -- Idempotency: an event id is stored once per tenant and environment.
    CONSTRAINT events_idempotency UNIQUE (tenant_id, environment, event_id)
) STRICT;
-- ListEvents: newest first within a scope.
CREATE INDEX events_by_time ON events (tenant_id, environment, ts DESC, seq DESC);
-- GetUsage and ListEvents filtered by name: one event name over a time range.
CREATE INDEX events_by_name ON events (tenant_id, environment, event_name, ts);
