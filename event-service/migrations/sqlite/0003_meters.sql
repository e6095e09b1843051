-- "What did customer X do?": ListEvents filtered by customer (and by customer and name), newest
-- first, without reading other customers' events.
CREATE INDEX events_scope_by_customer ON events (scope_id, external_customer_id, ts DESC, seq DESC);

-- Meters: what a tenant bills by (see event-service/src/store/meters.rs). `start_seq` is the
-- last event number handed out when the meter was created: events up to it are counted by the
-- backfill (whose position is `cursor_ts`, `cursor_seq`), later ones by the writer, in the
-- transaction that stores them.
CREATE TABLE meters (
    id              INTEGER PRIMARY KEY,
    scope_id        INTEGER NOT NULL,
    meter_key       TEXT NOT NULL,
    description     TEXT NOT NULL,
    event_name      TEXT NOT NULL,
    aggregation     TEXT NOT NULL CHECK (aggregation IN ('count', 'sum', 'min', 'max', 'count_unique')),
    property        TEXT NOT NULL,
    group_by        TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    start_seq       INTEGER NOT NULL,
    ready           INTEGER NOT NULL,
    cursor_ts       INTEGER,
    cursor_seq      INTEGER,
    backfill_done   INTEGER NOT NULL,
    backfill_total  INTEGER,
    CONSTRAINT meters_by_key UNIQUE (scope_id, meter_key)
) STRICT;

-- Moves whenever a meter is created or deleted: writers reload the definitions when it does.
CREATE TABLE meter_epoch (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  INTEGER NOT NULL
) STRICT;
INSERT INTO meter_epoch (id, version) VALUES (1, 0);

-- Per meter, day (UTC, microseconds), customer and group: keyed by day first, so that every
-- customer's days are one range and one customer's are a seek per day.
CREATE TABLE meter_days (
    meter_id   INTEGER NOT NULL,
    day        INTEGER NOT NULL,
    customer   TEXT NOT NULL,
    grp        TEXT NOT NULL,
    events     INTEGER NOT NULL,
    int_hi     INTEGER NOT NULL,
    int_lo     INTEGER NOT NULL,
    real_sum   REAL NOT NULL,
    reals      INTEGER NOT NULL,
    min_value  REAL,
    max_value  REAL,
    PRIMARY KEY (meter_id, day, customer, grp)
) STRICT, WITHOUT ROWID;

-- Per meter, bucket (minutes and hours, `width` in microseconds) and group, across customers.
CREATE TABLE meter_totals (
    meter_id   INTEGER NOT NULL,
    width      INTEGER NOT NULL,
    bucket     INTEGER NOT NULL,
    grp        TEXT NOT NULL,
    events     INTEGER NOT NULL,
    int_hi     INTEGER NOT NULL,
    int_lo     INTEGER NOT NULL,
    real_sum   REAL NOT NULL,
    reals      INTEGER NOT NULL,
    min_value  REAL,
    max_value  REAL,
    PRIMARY KEY (meter_id, width, bucket, grp)
) STRICT, WITHOUT ROWID;

-- COUNT_UNIQUE meters: each distinct value per day, customer and group.
CREATE TABLE meter_distinct (
    meter_id  INTEGER NOT NULL,
    day       INTEGER NOT NULL,
    customer  TEXT NOT NULL,
    grp       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (meter_id, day, customer, grp, value)
) STRICT, WITHOUT ROWID;
