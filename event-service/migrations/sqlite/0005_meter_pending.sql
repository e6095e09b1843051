-- Staged meter deltas (see the PostgreSQL migration 0008). SQLite's single writer upserts the
-- rollups in the insert transaction instead, so this table stays empty here; it exists so that
-- both backends run the same queries and the same fold.
CREATE TABLE meter_pending (
    id        INTEGER PRIMARY KEY,
    meter_id  INTEGER NOT NULL,
    deltas    BLOB NOT NULL
) STRICT;

CREATE INDEX meter_pending_by_meter ON meter_pending (meter_id);
