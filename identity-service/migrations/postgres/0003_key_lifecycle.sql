-- The key lifecycle: rotation, a change log that also carries changed keys, and the audit log.

-- A rotated key names the key that replaced it.
ALTER TABLE api_keys ADD COLUMN replaced_by TEXT;

-- The change log learns a third kind of change, 'changed': a key that still exists but whose
-- record changed (a rotation brought its expiry forward); caches drop it, the index of issued
-- digests keeps it.
ALTER TABLE key_changes DROP CONSTRAINT key_changes_change_check;
ALTER TABLE key_changes ADD CONSTRAINT key_changes_change_check
    CHECK (change IN ('issued', 'revoked', 'changed'));

-- The audit log: appended in the same transaction as each change, never updated or deleted,
-- never holding a secret.
CREATE TABLE audit_events (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    tenant_id       TEXT NOT NULL,
    at              BIGINT NOT NULL,
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
);
CREATE INDEX audit_events_by_tenant ON audit_events (tenant_id, seq);
