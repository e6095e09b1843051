-- Tenants, their accounts, and API keys. Times are microseconds since the Unix epoch.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_type   TEXT NOT NULL CHECK (user_type IN ('user', 'service_account')),
    name        TEXT NOT NULL,
    -- Comma-separated role names; empty for a person's account.
    roles       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX users_by_tenant ON users (tenant_id, id);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_type     TEXT NOT NULL CHECK (user_type IN ('user', 'service_account')),
    environment   TEXT NOT NULL CHECK (environment IN ('production', 'sandbox')),
    name          TEXT NOT NULL,
    -- Copied from the owner at creation, never updated.
    roles         TEXT NOT NULL,
    -- SHA-256 of the secret; the secret itself is never stored.
    digest        BYTEA NOT NULL UNIQUE CHECK (length(digest) = 32),
    display_hint  TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    last_used_at  BIGINT
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, id);
CREATE INDEX api_keys_by_user ON api_keys (user_id);
