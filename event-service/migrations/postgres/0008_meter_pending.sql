-- What insert transactions add to the meters, staged: one row per meter and transaction, its
-- deltas in the binary form of `store::pending`. A background fold adds them to meter_days,
-- meter_totals and meter_distinct and deletes them, in one transaction; queries read the rollups
-- and these rows in one statement, so every event counts exactly once either way.
CREATE TABLE meter_pending (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    meter_id  BIGINT NOT NULL,
    deltas    BYTEA NOT NULL
);

-- Stored out of line uncompressed: compressing each staged row cost the insert transaction more
-- than the bytes it saved, and the row lives for less than a second.
ALTER TABLE meter_pending ALTER COLUMN deltas SET STORAGE EXTERNAL;

CREATE INDEX meter_pending_by_meter ON meter_pending (meter_id);
