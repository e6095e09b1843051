-- LATEST meters: the value of the latest event (of those at the same timestamp, the largest).
ALTER TABLE meters
    DROP CONSTRAINT meters_aggregation_check,
    ADD CONSTRAINT meters_aggregation_check
        CHECK (aggregation IN ('count', 'sum', 'min', 'max', 'count_unique', 'latest'));

-- The latest value and its event's timestamp, per rollup row; NULL (both) for other meters.
-- Nullable columns without a default: added without rewriting the tables.
ALTER TABLE meter_days ADD COLUMN latest_ts BIGINT, ADD COLUMN latest_value DOUBLE PRECISION;
ALTER TABLE meter_totals ADD COLUMN latest_ts BIGINT, ADD COLUMN latest_value DOUBLE PRECISION;
