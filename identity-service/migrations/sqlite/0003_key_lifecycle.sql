-- The key lifecycle: rotation, a change log that also carries changed keys, and the audit log.

-- A rotated key names the key that replaced it.
ALTER TABLE api_keys ADD COLUMN replaced_by TEXT;

-- The change log learns a third kind of change, 'changed': a key that still exists but whose
-- record changed (a rotation brought its expiry forward); caches drop it, the index of issued
-- digests keeps it. SQLite cannot alter a CHECK constraint, so the table is rebuilt, keeping its
-- rows and its place in the numbering (followers resume by number).
CREATE TABLE key_changes_new (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    digest  BLOB NOT NULL CHECK (length(digest) = 32),
    change  TEXT NOT NULL CHECK (change IN ('issued', 'revoked', 'changed')),
    at      INTEGER NOT NULL
) STRICT;
INSERT INTO key_changes_new (seq, digest, change, at)
    SELECT seq, digest, change, at FROM key_changes;
DELETE FROM sqlite_sequence WHERE name = 'key_changes_new';
UPDATE sqlite_sequence SET name = 'key_changes_new' WHERE name = 'key_changes';
DROP TABLE key_changes;
ALTER TABLE key_changes_new RENAME TO key_changes;

-- The audit log: appended in the same transaction as each change, never updated or deleted,
-- never holding a secret.
CREATE TABLE audit_events (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    tenant_id       TEXT NOT NULL,
    at              INTEGER NOT NULL,
    action          TEXT NOT NULL,
    actor_key_id    TEXT NOT NULL,
    actor_user_id   TEXT NOT NULL,
    actor_command   TEXT NOT NULL,
    actor_address   TEXT NOT NULL,
    target_id       TEXT NOT NULL,
    environment     TEXT NOT NULL CHECK (environment IN ('production', 'sandbox')),
    roles_before    TEXT NOT NULL,
    roles_after     TEXT NOT NULL,
    replacement_id  TEXT NOT NULL
) STRICT;
CREATE INDEX audit_events_by_tenant ON audit_events (tenant_id, seq);
