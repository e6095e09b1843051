-- Every change to which keys exist, in commit order: identity-service replicas follow it to keep
-- their in-memory index of issued digests and their key caches current, and event-service's
-- revocation stream is read from it. Writers take a transaction-level advisory lock before they
-- append, so that sequence numbers are handed out in commit order and a follower that has read
-- up to N never sees a smaller number appear later. Rows older than a day are pruned.
CREATE TABLE key_changes (
    seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    digest  BYTEA NOT NULL CHECK (length(digest) = 32),
    change  TEXT NOT NULL CHECK (change IN ('issued', 'revoked')),
    at      BIGINT NOT NULL
);
