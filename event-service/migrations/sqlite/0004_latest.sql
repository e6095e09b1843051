-- LATEST meters: the value of the latest event (of those at the same timestamp, the largest).
-- SQLite cannot change a CHECK constraint in place: the meters table is copied into one that
-- allows 'latest', column for column.
CREATE TABLE meters_next (
    id              INTEGER PRIMARY KEY,
    scope_id        INTEGER NOT NULL,
    meter_key       TEXT NOT NULL,
    description     TEXT NOT NULL,
    event_name      TEXT NOT NULL,
    aggregation     TEXT NOT NULL CHECK (aggregation IN ('count', 'sum', 'min', 'max', 'count_unique', 'latest')),
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
INSERT INTO meters_next SELECT * FROM meters;
DROP TABLE meters;
ALTER TABLE meters_next RENAME TO meters;

-- The latest value and its event's timestamp, per rollup row; NULL (both) for other meters.
ALTER TABLE meter_days ADD COLUMN latest_ts INTEGER;
ALTER TABLE meter_days ADD COLUMN latest_value REAL;
ALTER TABLE meter_totals ADD COLUMN latest_ts INTEGER;
ALTER TABLE meter_totals ADD COLUMN latest_value REAL;
