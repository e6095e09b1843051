-- Rollup series shared by meters that read the same values (see the PostgreSQL migration 0009).
-- Series ids are meter ids; SQLite may hand a deleted meter's id out again only when it was the
-- largest, and a series outlives its first meter only through a later (larger) one, so a new
-- meter's id never names a series still in use.
ALTER TABLE meters ADD COLUMN series_id INTEGER NOT NULL DEFAULT 0;
UPDATE meters SET series_id = id;
