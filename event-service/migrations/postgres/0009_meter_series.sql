-- Rollup series: meters that read the same values from the same events (same event name,
-- property and group-by; SUM, MIN and MAX all keep one aggregate row with every figure) share
-- one series of rollup rows, named by the first meter's id. The rollups' and staged rows'
-- `meter_id` is that series id. A meter created beside a finished series needs no backfill,
-- and an insert counts each series once, not each meter.
ALTER TABLE meters ADD COLUMN series_id BIGINT NOT NULL DEFAULT 0;
UPDATE meters SET series_id = id;
ALTER TABLE meters ALTER COLUMN series_id DROP DEFAULT;
