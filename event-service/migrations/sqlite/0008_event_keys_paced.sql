-- The writer flushes the event ids it holds in memory into the key tables in parts, a few keys
-- per event each insert stores, instead of all at once (see event-service/src/store/keys.rs).
-- A flush under way covers the events after flushed_seq up to flushing_seq (0: none under way);
-- its keys up to (flushing_scope_id, flushing_event_id), in key order, are in the tables
-- already, so that a restart resumes it where it stopped.
ALTER TABLE event_keys_state ADD COLUMN flushing_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE event_keys_state ADD COLUMN flushing_scope_id INTEGER;
ALTER TABLE event_keys_state ADD COLUMN flushing_event_id TEXT;
