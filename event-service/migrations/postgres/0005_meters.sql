-- "What did customer X do?": ListEvents filtered by customer (and by customer and name), newest
-- first, without reading other customers' events.
-- Customers are compared as bytes, as event ids and names are (see 0004), and as SQLite does:
-- per-customer figures sort the same on both backends.
ALTER TABLE events ALTER COLUMN external_customer_id TYPE TEXT COLLATE "C";
CREATE INDEX events_scope_by_customer ON events (scope_id, external_customer_id, ts DESC, seq DESC);

-- Meters: what a tenant bills by (see event-service/src/store/meters.rs). `start_seq` is the
-- last event number handed out when the meter was created: events up to it are counted by the
-- backfill (whose position is `cursor_ts`, `cursor_seq`), later ones by the writer, in the
-- transaction that stores them.
-- Every unique key starts with `scope_id`, as the events table's does, so the table can be
-- distributed by scope (see docs/scale-out.md).
CREATE TABLE meters (
    id              BIGINT GENERATED ALWAYS AS IDENTITY,
    scope_id        BIGINT NOT NULL,
    meter_key       TEXT NOT NULL,
    description     TEXT NOT NULL,
    event_name      TEXT NOT NULL,
    aggregation     TEXT NOT NULL CHECK (aggregation IN ('count', 'sum', 'min', 'max', 'count_unique')),
    property        TEXT NOT NULL,
    group_by        TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    start_seq       BIGINT NOT NULL,
    ready           BIGINT NOT NULL,
    cursor_ts       BIGINT,
    cursor_seq      BIGINT,
    backfill_done   BIGINT NOT NULL,
    backfill_total  BIGINT,
    PRIMARY KEY (scope_id, id),
    CONSTRAINT meters_by_key UNIQUE (scope_id, meter_key)
);
-- The backfill and the writer's definitions find a meter by its id alone.
CREATE INDEX meters_by_id ON meters (id);

-- Moves whenever a meter is created or deleted: writers reload the definitions when it does.
CREATE TABLE meter_epoch (
    id       BIGINT PRIMARY KEY CHECK (id = 1),
    version  BIGINT NOT NULL
);
INSERT INTO meter_epoch (id, version) VALUES (1, 0);

-- Per meter, day (UTC, microseconds), customer and group: keyed by day first, so that every
-- customer's days are one range and one customer's are a seek per day.
CREATE TABLE meter_days (
    meter_id   BIGINT NOT NULL,
    day        BIGINT NOT NULL,
    customer   TEXT COLLATE "C" NOT NULL,
    grp        TEXT COLLATE "C" NOT NULL,
    events     BIGINT NOT NULL,
    int_hi     BIGINT NOT NULL,
    int_lo     BIGINT NOT NULL,
    real_sum   DOUBLE PRECISION NOT NULL,
    reals      BIGINT NOT NULL,
    min_value  DOUBLE PRECISION,
    max_value  DOUBLE PRECISION,
    PRIMARY KEY (meter_id, day, customer, grp)
);

-- Per meter, bucket (minutes and hours, `width` in microseconds) and group, across customers.
CREATE TABLE meter_totals (
    meter_id   BIGINT NOT NULL,
    width      BIGINT NOT NULL,
    bucket     BIGINT NOT NULL,
    grp        TEXT COLLATE "C" NOT NULL,
    events     BIGINT NOT NULL,
    int_hi     BIGINT NOT NULL,
    int_lo     BIGINT NOT NULL,
    real_sum   DOUBLE PRECISION NOT NULL,
    reals      BIGINT NOT NULL,
    min_value  DOUBLE PRECISION,
    max_value  DOUBLE PRECISION,
    PRIMARY KEY (meter_id, width, bucket, grp)
);

-- COUNT_UNIQUE meters: each distinct value per day, customer and group.
CREATE TABLE meter_distinct (
    meter_id  BIGINT NOT NULL,
    day       BIGINT NOT NULL,
    customer  TEXT COLLATE "C" NOT NULL,
    grp       TEXT COLLATE "C" NOT NULL,
    value     TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (meter_id, day, customer, grp, value)
);
