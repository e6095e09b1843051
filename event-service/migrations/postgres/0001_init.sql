-- Usage events. Times are microseconds since the Unix epoch. `seq` is a time-ordered surrogate
-- key: inserts append at the right edge of the primary-key index (a random UUID key made batched
-- inserts several times slower), and it breaks timestamp ties for keyset paging.
CREATE TABLE events (
    seq                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id             TEXT NOT NULL,
    environment           TEXT NOT NULL,
    event_id              TEXT NOT NULL,
    event_name            TEXT NOT NULL,
    external_customer_id  TEXT NOT NULL,
    ts                    BIGINT NOT NULL,
    properties            JSONB NOT NULL,
    source                TEXT NOT NULL,
    ingested_at           BIGINT NOT NULL,
    -- Idempotency: an event id is stored once per tenant and environment.
    CONSTRAINT events_idempotency UNIQUE (tenant_id, environment, event_id)
);
-- ListEvents: newest first within a scope.
CREATE INDEX events_by_time ON events (tenant_id, environment, ts DESC, seq DESC);
-- GetUsage and ListEvents filtered by name: one event name over a time range.
CREATE INDEX events_by_name ON events (tenant_id, environment, event_name, ts);
