-- Every change to which keys exist, in commit order: identity-service replicas follow it to keep
-- their in-memory index of issued digests and their key caches current, and event-service's
-- revocation stream is read from it. Rows older than a day are pruned.
CREATE TABLE key_changes (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    digest  BLOB NOT NULL CHECK (length(digest) = 32),
    change  TEXT NOT NULL CHECK (change IN ('issued', 'revoked')),
    at      INTEGER NOT NULL
) STRICT;
