-- Rollup rows are updated in place batch after batch: room left on each page lets PostgreSQL
-- write the new version next to the old one without a new index entry (a HOT update) and prune
-- the old versions whenever it reads the page, whether autovacuum runs or not. Applies to pages
-- written from now on.
ALTER TABLE meter_days SET (fillfactor = 70);
ALTER TABLE meter_totals SET (fillfactor = 70);
